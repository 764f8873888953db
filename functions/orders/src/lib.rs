//! Queue trigger sample: each order message from `orders` is checked, archived
//! as the blob `orders-archive/{id}.json`, and confirmed on `orders-processed`.
//! A message that is not an order fails, is retried, and after 5 attempts
//! lands in `orders-poison` unchanged.

use fnhost_sdk::{QueueMessage, blob, queue, queue_trigger};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize)]
struct Order {
    id: String,
    item: String,
    quantity: u32,
}

#[queue_trigger]
fn process_order(message: QueueMessage) -> Result<(), String> {
    let order: Order = message
        .json()
        .map_err(|e| format!("message {} is not an order: {e}", message.id))?;
    if order.quantity == 0 {
        return Err(format!("order {}: quantity must be at least 1", order.id));
    }
    fnhost_sdk::log::info(format!(
        "order {} ({} x {}), attempt {}",
        order.id, order.quantity, order.item, message.dequeue_count
    ));
    let archived = serde_json::to_vec(&order).map_err(|e| e.to_string())?;
    blob::write(&format!("orders-archive/{}.json", order.id), archived)?;
    queue::Queue::new("orders-processed").send_json(&serde_json::json!({
        "id": order.id,
        "status": "processed",
        "message_id": message.id,
    }))
}

fnhost_sdk::export_functions!(process_order);
