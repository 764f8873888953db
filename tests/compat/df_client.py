"""Drive a running fnhost with the real Durable Functions Python client.

Usage: python df_client.py http://127.0.0.1:PORT TASKHUB [SYSTEMKEY RPCBASE]

With SYSTEMKEY and RPCBASE (keys enforced), the webhook URLs carry `code=`
and the client talks to the local RPC endpoint, as the extension sets it up.

The binding below is what the Functions host hands a Python function with a
durableClient binding; its URLs point at this host instead.
"""
import asyncio
import json
import sys
import time

from azure.durable_functions import DurableOrchestrationClient, EntityId
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

base, hub = sys.argv[1], sys.argv[2]
code = sys.argv[3] if len(sys.argv) > 3 else None
hook = f"{base}/runtime/webhooks/durabletask/"
rpc = sys.argv[4] if len(sys.argv) > 4 else hook
query = f"taskHub={hub}&connection=Storage" + (f"&code={code}" if code else "")
binding = {
    "taskHubName": hub,
    "creationUrls": {
        "createNewInstancePostUri": f"{hook}orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
        "createAndWaitOnNewInstancePostUri": f"{hook}orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{query}",
    },
    "managementUrls": {
        "id": "INSTANCEID",
        "statusQueryGetUri": f"{hook}instances/INSTANCEID?{query}",
        "sendEventPostUri": f"{hook}instances/INSTANCEID/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{hook}instances/INSTANCEID/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{hook}instances/INSTANCEID/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{hook}instances/INSTANCEID?{query}",
        "restartPostUri": f"{hook}instances/INSTANCEID/restart?{query}",
        "suspendPostUri": f"{hook}instances/INSTANCEID/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{hook}instances/INSTANCEID/resume?reason={{text}}&{query}",
    },
    "baseUrl": hook,
    "requiredQueryStringParameters": query,
    "rpcBaseUrl": rpc,
    "httpBaseUrl": "",
    "maxGrpcMessageSizeInBytes": 0,
    "grpcHttpClientTimeout": "00:01:40",
}
client = DurableOrchestrationClient(json.dumps(binding))


async def wait_until(instance_id, statuses, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status = await client.get_status(instance_id, show_input=True)
        if status.runtime_status in statuses:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{instance_id} did not reach {statuses}: {status.runtime_status}")


async def main():
    done = {OrchestrationRuntimeStatus.Completed, OrchestrationRuntimeStatus.Failed, OrchestrationRuntimeStatus.Terminated}

    # start_new + get_status
    chain = await client.start_new("HelloSequence", None, None)
    status = await wait_until(chain, done)
    assert status.runtime_status == OrchestrationRuntimeStatus.Completed, status.to_json()
    assert status.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"], status.output
    assert status.name == "HelloSequence" and status.instance_id == chain
    assert status.created_time is not None and status.last_updated_time is not None

    # An instance id of our own, input, raise_event
    approval = await client.start_new("ApprovalWithTimeout", "py-approval", {"timeout_seconds": 60})
    assert approval == "py-approval"
    running = await wait_until(approval, {OrchestrationRuntimeStatus.Running})
    # The Python client JSON-encodes the input before posting it as JSON, so it
    # is stored (and shown) as that JSON text, as in Durable Functions.
    shown = running.input_
    assert (json.loads(shown) if isinstance(shown, str) else shown) == {"timeout_seconds": 60}, running.to_json()
    await client.raise_event(approval, "Approval", True)
    status = await wait_until(approval, done)
    assert status.output == ["Your project design proposal has been -  Approved!"], status.output

    # suspend, resume, terminate
    victim = await client.start_new("ApprovalWithTimeout", None, {"timeout_seconds": 60})
    await wait_until(victim, {OrchestrationRuntimeStatus.Running})
    await client.suspend(victim, "pause")
    await wait_until(victim, {OrchestrationRuntimeStatus.Suspended})
    await client.resume(victim, "go on")
    await wait_until(victim, {OrchestrationRuntimeStatus.Running})
    await client.terminate(victim, "enough")
    status = await wait_until(victim, done)
    assert status.runtime_status == OrchestrationRuntimeStatus.Terminated

    # Listing and filtering
    everything = await client.get_status_all()
    ids = {s.instance_id for s in everything}
    assert {chain, approval, victim} <= ids, ids
    completed = await client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Completed])
    assert {s.instance_id for s in completed} >= {chain, approval}
    assert victim not in {s.instance_id for s in completed}

    # An orchestrator that does not exist: the client raises with our message.
    try:
        await client.start_new("NoSuchOrchestrator", None, None)
        raise AssertionError("start_new of an unknown orchestrator succeeded")
    except Exception as e:  # noqa: BLE001 - the client raises a bare Exception
        assert "no orchestrator function named 'NoSuchOrchestrator'" in str(e), e

    # Unknown instances
    unknown = await client.get_status("no-such-instance")
    assert unknown.runtime_status is None

    # purge
    result = await client.purge_instance_history(chain)
    assert result.instances_deleted == 1, result
    result = await client.purge_instance_history(chain)
    assert result.instances_deleted == 0, result
    # Entities (seed 003's counter): signal_entity, read_entity_state.
    counter = EntityId("counter", "py-counter")
    await client.signal_entity(counter, "add", 100)
    await client.signal_entity(counter, "subtract", 25)
    end = time.monotonic() + 60
    while True:
        state = await client.read_entity_state(counter)
        if state.entity_exists and state.entity_state == 75:
            break
        assert time.monotonic() < end, f"py-counter did not reach 75: {state.entity_state}"
        await asyncio.sleep(0.1)
    missing = await client.read_entity_state(EntityId("counter", "py-never-signalled"))
    assert not missing.entity_exists
    try:
        await client.signal_entity(EntityId("nosuchentity", "k"), "add", 1)
        raise AssertionError("signal_entity of an unknown entity succeeded")
    except Exception as e:  # noqa: BLE001 - the client raises a bare Exception
        assert "400" in str(e), e
    print("python durable client: all operations ok")


asyncio.run(main())
