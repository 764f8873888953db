// Drive a running fnhost with the real Durable Functions npm client
// (`durable-functions` 3.x, `df.getClient(context)`), unchanged.
//
// Usage: node df_client.mjs http://127.0.0.1:PORT TASKHUB [SYSTEMKEY RPCBASE]
// (with SYSTEMKEY and RPCBASE, keys are enforced: the webhook URLs carry
// `code=` and requests go to the local RPC endpoint, as the extension sets it up)
//
// The binding below is what the Functions host hands a Node.js function with a
// durableClient input binding (the Node worker JSON-parses it into
// context.extraInputs); its URLs point at this host instead. With
// `rpcBaseUrl` set, as the extension sets it for out-of-process workers, the
// client builds every request from `rpcBaseUrl`; the managementUrls only feed
// createCheckStatusResponse / createHttpManagementPayload.
import assert from "node:assert/strict";

import functions from "@azure/functions";
import df from "durable-functions";

const { HttpRequest, InvocationContext } = functions;
const { OrchestrationRuntimeStatus: S } = df;

const [base, hub, code, rpcBase] = process.argv.slice(2);
assert.ok(base && hub, "usage: node df_client.mjs http://127.0.0.1:PORT TASKHUB [SYSTEMKEY RPCBASE]");
const hook = `${base}/runtime/webhooks/durabletask/`;
const rpc = rpcBase || hook;
const query = `taskHub=${hub}&connection=Storage` + (code ? `&code=${code}` : "");
const binding = {
    taskHubName: hub,
    creationUrls: {
        createNewInstancePostUri: `${hook}orchestrators/{functionName}[/{instanceId}]?${query}`,
        createAndWaitOnNewInstancePostUri: `${hook}orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&${query}`,
    },
    managementUrls: {
        id: "INSTANCEID",
        statusQueryGetUri: `${hook}instances/INSTANCEID?${query}`,
        sendEventPostUri: `${hook}instances/INSTANCEID/raiseEvent/{eventName}?${query}`,
        terminatePostUri: `${hook}instances/INSTANCEID/terminate?reason={text}&${query}`,
        rewindPostUri: `${hook}instances/INSTANCEID/rewind?reason={text}&${query}`,
        purgeHistoryDeleteUri: `${hook}instances/INSTANCEID?${query}`,
        restartPostUri: `${hook}instances/INSTANCEID/restart?${query}`,
        suspendPostUri: `${hook}instances/INSTANCEID/suspend?reason={text}&${query}`,
        resumePostUri: `${hook}instances/INSTANCEID/resume?reason={text}&${query}`,
    },
    baseUrl: hook,
    requiredQueryStringParameters: query,
    rpcBaseUrl: rpc,
    httpBaseUrl: "",
    maxGrpcMessageSizeInBytes: 0,
    grpcHttpClientTimeout: "00:01:40",
};

// The InvocationContext a Functions app's HTTP-triggered starter receives:
// registered with `extraInputs: [df.input.durableClient()]`, its value filled in
// from the binding data.
function invocationContext() {
    const clientInput = df.input.durableClient();
    const context = new InvocationContext({
        functionName: "HttpStart",
        invocationId: "00000000-0000-0000-0000-000000000001",
        options: {
            trigger: { type: "httpTrigger", name: "request" },
            extraInputs: [clientInput],
        },
    });
    context.extraInputs.set(clientInput, JSON.parse(JSON.stringify(binding)));
    return context;
}

// getClient() rewrites the management URLs' origin to http://localhost:7071
// unless WEBSITE_HOSTNAME names the app (Azure sets it to the app's host
// name). Without it, a client still works (requests go to rpcBaseUrl), but the
// payload of createHttpManagementPayload points at localhost:7071.
delete process.env.WEBSITE_HOSTNAME;
const localClient = df.getClient(invocationContext());
const localPayload = localClient.createHttpManagementPayload("x");
assert.equal(localPayload.statusQueryGetUri, `http://localhost:7071/runtime/webhooks/durabletask/instances/x?${query}`);

process.env.WEBSITE_HOSTNAME = new URL(base).host;
const client = df.getClient(invocationContext());
assert.equal(client.taskHubName, hub);

const done = new Set([S.Completed, S.Failed, S.Terminated]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(instanceId, statuses, deadlineMs = 60_000) {
    const end = Date.now() + deadlineMs;
    let status;
    while (Date.now() < end) {
        status = await client.getStatus(instanceId, { showInput: true });
        if (statuses.has(status.runtimeStatus)) {
            return status;
        }
        await sleep(100);
    }
    throw new Error(`${instanceId} did not reach ${[...statuses]}: ${status?.runtimeStatus}`);
}

async function rejects(promise, pattern, what) {
    try {
        await promise;
    } catch (e) {
        assert.match(e.message, pattern, `${what}: ${e.message}`);
        return e;
    }
    throw new Error(`${what} did not fail`);
}

function request(url) {
    return new HttpRequest({ method: "POST", url, headers: {} });
}

async function main() {
    const before = new Date(Date.now() - 2_000);

    // startNew without an instance id or input + getStatus
    const chain = await client.startNew("HelloSequence");
    assert.match(chain, /^[0-9a-f-]{32,36}$/i, chain);
    let status = await waitUntil(chain, done);
    assert.equal(status.runtimeStatus, S.Completed, JSON.stringify(status));
    assert.deepEqual(status.output, ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]);
    assert.equal(status.name, "HelloSequence");
    assert.equal(status.instanceId, chain);
    assert.ok(!Number.isNaN(status.createdTime.getTime()), String(status.createdTime));
    assert.ok(status.lastUpdatedTime >= status.createdTime);
    // Without an input the client still posts a body: axios turns its "" into
    // the JSON text `""`, so the input is the empty string (as in Durable
    // Functions, which parses the body the same way).
    assert.equal(status.input, "");

    // showHistory: the request succeeds, but durable-functions 3.5.0 reads
    // `history` from the response while the extension (and this host) send
    // `historyEvents`, so `history` stays undefined: a client bug
    // (Azure/azure-functions-durable-js#620), not the host's.
    status = await client.getStatus(chain, { showHistory: true, showHistoryOutput: true });
    assert.equal(status.runtimeStatus, S.Completed);
    assert.equal(status.history, undefined);

    // startNew with an instance id and input; raiseEvent
    const approval = await client.startNew("ApprovalWithTimeout", {
        instanceId: "node-approval",
        input: { timeout_seconds: 60 },
    });
    assert.equal(approval, "node-approval");
    status = await waitUntil(approval, new Set([S.Running]));
    // The npm client posts the input as JSON once: it comes back as the object.
    assert.deepEqual(status.input, { timeout_seconds: 60 });
    // A running instance: the HTTP helpers answer 202 with where to ask.
    const check = await client.waitForCompletionOrCreateCheckStatusResponse(request(`${base}/api/orchestrators/x`), approval, {
        timeoutInMilliseconds: 300,
        retryIntervalInMilliseconds: 100,
    });
    assert.equal(check.status, 202);
    const checkBody = await check.json();
    assert.equal(checkBody.id, approval);
    assert.equal(checkBody.statusQueryGetUri, `${hook}instances/${approval}?${query}`);
    assert.equal(check.headers.get("location"), checkBody.statusQueryGetUri);
    // ...and those URLs work as they are.
    let r = await fetch(checkBody.statusQueryGetUri);
    assert.equal(r.status, 202);
    assert.equal((await r.json()).runtimeStatus, S.Running);
    await client.raiseEvent(approval, "Approval", true);
    status = await waitUntil(approval, done);
    assert.deepEqual(status.output, ["Your project design proposal has been -  Approved!"]);
    // Raising an event on a finished instance: 410, which the client ignores.
    await client.raiseEvent(approval, "Approval", true);

    // createCheckStatusResponse / waitForCompletionOrCreateCheckStatusResponse
    const checkResponse = client.createCheckStatusResponse(request(`${base}/api/orchestrators/HelloSequence`), chain);
    assert.equal(checkResponse.status, 202);
    const links = await checkResponse.json();
    assert.equal(links.sendEventPostUri, `${hook}instances/${chain}/raiseEvent/{eventName}?${query}`);
    r = await fetch(links.statusQueryGetUri);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).runtimeStatus, S.Completed);
    assert.deepEqual(client.createHttpManagementPayload(chain), links);
    const finished = await client.waitForCompletionOrCreateCheckStatusResponse(request(`${base}/api/x`), chain);
    assert.equal(finished.status, 200);
    assert.deepEqual(await finished.json(), ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]);

    // suspend, resume, terminate
    const victim = await client.startNew("ApprovalWithTimeout", { input: { timeout_seconds: 60 } });
    await waitUntil(victim, new Set([S.Running]));
    await client.suspend(victim, "pause");
    await waitUntil(victim, new Set([S.Suspended]));
    await client.resume(victim, "go on");
    await waitUntil(victim, new Set([S.Running]));
    await client.terminate(victim, "enough");
    status = await waitUntil(victim, done);
    assert.equal(status.runtimeStatus, S.Terminated);
    assert.equal(status.output, "enough");
    // Finished: 410, which the client ignores.
    await client.terminate(victim, "again");
    await client.suspend(victim, "again");
    await client.resume(victim, "again");

    // Unknown instances: 404; raiseEvent/terminate/suspend/resume reject with
    // the client's own message, getStatus rejects (it has no "not found" value).
    await rejects(client.raiseEvent("no-such-instance", "Approval", true), /No instance with ID 'no-such-instance' found/, "raiseEvent");
    await rejects(client.terminate("no-such-instance", "x"), /No instance with ID 'no-such-instance' found/, "terminate");
    await rejects(client.suspend("no-such-instance", "x"), /No instance with ID 'no-such-instance' found/, "suspend");
    await rejects(client.resume("no-such-instance", "x"), /No instance with ID 'no-such-instance' found/, "resume");
    await rejects(client.getStatus("no-such-instance"), /replied with HTTP 404 response.*no-such-instance/, "getStatus of an unknown instance");

    // rewind: rejected for an instance that did not fail (412, as Durable
    // Functions answers, with a JSON string the client uses as its message),
    // and for an unknown one (404, likewise).
    await rejects(client.rewind(chain, "again"), /only failed instances can be rewound/, "rewind of a completed instance");
    await rejects(client.rewind("no-such-instance", "again"), /no instance 'no-such-instance'/, "rewind of an unknown instance");

    // Listing and filtering (getStatusAll/getStatusBy return the raw JSON).
    const everything = await client.getStatusAll();
    const ids = new Set(everything.map((s) => s.instanceId));
    for (const id of [chain, approval, victim]) {
        assert.ok(ids.has(id), `${id} not in getStatusAll: ${[...ids]}`);
    }
    const completed = await client.getStatusBy({ runtimeStatus: [S.Completed] });
    const completedIds = new Set(completed.map((s) => s.instanceId));
    assert.ok(completedIds.has(chain) && completedIds.has(approval), [...completedIds].join());
    assert.ok(!completedIds.has(victim));
    assert.ok(completed.every((s) => s.runtimeStatus === S.Completed));
    const several = await client.getStatusBy({ runtimeStatus: [S.Completed, S.Terminated] });
    assert.ok(several.some((s) => s.instanceId === victim) && several.some((s) => s.instanceId === chain));
    const recent = await client.getStatusBy({ createdTimeFrom: before, createdTimeTo: new Date(Date.now() + 60_000) });
    assert.ok(recent.some((s) => s.instanceId === chain), JSON.stringify(recent));
    const future = await client.getStatusBy({ createdTimeFrom: new Date(Date.now() + 3_600_000) });
    assert.deepEqual(future, []);

    // An orchestrator that does not exist: rejected with the host's message.
    await rejects(
        client.startNew("NoSuchOrchestrator"),
        /status code: 4\d\d.*no orchestrator function named 'NoSuchOrchestrator'/,
        "startNew of an unknown orchestrator",
    );

    // purge
    let result = await client.purgeInstanceHistory(chain);
    assert.equal(result.instancesDeleted, 1, JSON.stringify(result));
    result = await client.purgeInstanceHistory(chain);
    assert.equal(result.instancesDeleted, 0, JSON.stringify(result));
    await rejects(client.getStatus(chain), /HTTP 404/, "getStatus after purge");
    result = await client.purgeInstanceHistoryBy({ createdTimeFrom: before, runtimeStatus: [S.Terminated] });
    assert.equal(result.instancesDeleted, 1, JSON.stringify(result));
    result = await client.purgeInstanceHistoryBy({ createdTimeFrom: before, runtimeStatus: [S.Terminated] });
    assert.equal(result.instancesDeleted, 0, JSON.stringify(result));
    assert.ok(!(await client.getStatusAll()).some((s) => s.instanceId === victim));

    // Entities (seed 003's counter): signalEntity, readEntityState.
    const counter = new df.EntityId("counter", "node-counter");
    await client.signalEntity(counter, "add", 100);
    await client.signalEntity(counter, "subtract", 25);
    await client.signalEntity(counter, "add", { not: "a number" }); // fails in the entity, changes nothing
    const end = Date.now() + 60_000;
    for (;;) {
        const state = await client.readEntityState(counter);
        if (state.entityExists && state.entityState === 75) break;
        assert.ok(Date.now() < end, `node-counter did not reach 75: ${JSON.stringify(state)}`);
        await new Promise((r) => setTimeout(r, 100));
    }
    const never = await client.readEntityState(new df.EntityId("counter", "node-never-signalled"));
    assert.equal(never.entityExists, false);
    await rejects(
        client.signalEntity(new df.EntityId("nosuchentity", "k"), "add", 1),
        /400|no entity function named 'nosuchentity'/,
        "signalEntity of an unknown entity",
    );

    console.log("node durable client: all operations ok");
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
