//! The JSON body of one delivery (the uplink's HTTP contract, documented in README):
//!
//! ```json
//! {"appliance": "plant-02",
//!  "events": [{"id": "plant-02-1234", "idempotency_key": "plant-02-1234",
//!              "connector": "pbx", "kind": "ami.Hangup",
//!              "received_at": "2026-11-24T21:30:44.123Z", "payload": {...}}]}
//! ```
//!
//! `id` is the appliance's name and the event's spool sequence: unique for ever (sequences
//! are never reused), so the platform can drop a redelivered event by it. A payload that is
//! JSON is embedded as it is; anything else is sent as a string (invalid UTF-8 replaced).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::spool::Event;

/// The id of event `sequence` from `appliance`.
pub fn event_id(appliance: &str, sequence: u64) -> String {
    format!("{appliance}-{sequence}")
}

/// One event as the platform receives it.
pub fn event_json(appliance: &str, sequence: u64, event: &Event) -> Value {
    let received_at = UNIX_EPOCH + Duration::from_millis(event.received_at_ms);
    let id = event_id(appliance, sequence);
    json!({
        "id": id,
        // The same value under the name receivers' idempotency middleware looks for.
        "idempotency_key": id,
        "connector": event.connector,
        "kind": event.kind,
        "received_at": rfc3339(received_at),
        "payload": payload_json(&event.payload),
    })
}

/// The request body for `events`.
pub fn batch_body(appliance: &str, events: &[(u64, Event)]) -> Vec<u8> {
    let events: Vec<Value> = events
        .iter()
        .map(|(sequence, event)| event_json(appliance, *sequence, event))
        .collect();
    serde_json::to_vec(&json!({ "appliance": appliance, "events": events })).unwrap_or_default()
}

/// A status report, in the same envelope as events so the platform has one receiver: a
/// single event of kind `status` from connector `siteward`, its id made of the time (status
/// reports are not spooled, and never redelivered).
pub fn status_body(appliance: &str, at: SystemTime, status: Value) -> Vec<u8> {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let event = json!({
        "id": format!("{appliance}-status-{millis}"),
        "connector": STATUS_CONNECTOR,
        "kind": STATUS_KIND,
        "received_at": rfc3339(at),
        "payload": status,
    });
    serde_json::to_vec(&json!({ "appliance": appliance, "events": [event] })).unwrap_or_default()
}

/// The connector and kind of status reports.
pub const STATUS_CONNECTOR: &str = "siteward";
pub const STATUS_KIND: &str = "status";

fn payload_json(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &[u8]) -> Event {
        Event {
            connector: "pbx".into(),
            kind: "ami.Hangup".into(),
            received_at_ms: 1_795_000_244_123,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn an_event_carries_its_id_origin_time_and_payload() {
        let value = event_json("plant-02", 1234, &event(br#"{"Channel":"PJSIP/101"}"#));
        assert_eq!(value["id"], "plant-02-1234");
        assert_eq!(value["idempotency_key"], "plant-02-1234");
        assert_eq!(value["connector"], "pbx");
        assert_eq!(value["kind"], "ami.Hangup");
        // 1795000244.123 s after the epoch (checked with Python's datetime).
        assert_eq!(value["received_at"], "2026-11-18T11:10:44.123Z");
        assert_eq!(value["payload"]["Channel"], "PJSIP/101");
    }

    #[test]
    fn a_payload_that_is_not_json_goes_as_a_string() {
        let value = event_json("a", 1, &event(b"<134>Nov 24 host app: hello"));
        assert_eq!(value["payload"], "<134>Nov 24 host app: hello");
        let value = event_json("a", 1, &event(&[0xff, b'o', b'k']));
        assert_eq!(value["payload"], "\u{fffd}ok");
    }

    #[test]
    fn a_status_report_is_one_event_in_the_same_envelope() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_000_244_123);
        let body = status_body("plant-02", at, json!({"spool": {"events": 3}}));
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["appliance"], "plant-02");
        let event = &value["events"][0];
        assert_eq!(event["id"], "plant-02-status-1795000244123");
        assert_eq!(event["kind"], "status");
        assert_eq!(event["connector"], "siteward");
        assert_eq!(event["payload"]["spool"]["events"], 3);
    }

    #[test]
    fn a_batch_lists_the_events_in_order() {
        let body = batch_body("plant-02", &[(7, event(b"1")), (9, event(b"2"))]);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["appliance"], "plant-02");
        let ids: Vec<&str> = value["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["plant-02-7", "plant-02-9"]);
        assert_eq!(value["events"][1]["payload"], 2);
    }
}
