//! The bodies receivers get: the Alertmanager webhook (version 4) payload, and the alert
//! list of Alertmanager's `POST /api/v2/alerts`. One alarm per body, its fingerprint as
//! the group key, so a receiver can recognise a repeat.

use serde_json::{json, Value};

use crate::alarm::{Notice, Status};

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Alertmanager's "zero" time, meaning "not ended" in webhook payloads.
const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

fn status(notice: &Notice) -> &'static str {
    match notice.status {
        Status::Firing => "firing",
        Status::Resolved => "resolved",
    }
}

/// The Alertmanager webhook payload (version 4) for one notice.
pub fn webhook(notice: &Notice, receiver: &str, external_url: &str) -> Value {
    let ends_at = notice.ends_at.map(rfc3339).unwrap_or_else(|| NOT_ENDED.to_owned());
    json!({
        "version": "4",
        "groupKey": notice.fingerprint,
        "truncatedAlerts": 0,
        "status": status(notice),
        "receiver": receiver,
        "groupLabels": {"alertname": notice.labels.get("alertname")},
        "commonLabels": notice.labels,
        "commonAnnotations": notice.annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status(notice),
            "labels": notice.labels,
            "annotations": notice.annotations,
            "startsAt": rfc3339(notice.starts_at),
            "endsAt": ends_at,
            "generatorURL": external_url,
            "fingerprint": notice.fingerprint,
        }],
    })
}

/// The body of `POST /api/v2/alerts`. A firing alert is valid until `valid_until` (ms):
/// if the alarmer stops refreshing it, Alertmanager resolves it by itself then.
pub fn alertmanager(notice: &Notice, valid_until: i64, external_url: &str) -> Value {
    let ends_at = notice.ends_at.unwrap_or(valid_until);
    let mut alert = json!({
        "labels": notice.labels,
        "annotations": notice.annotations,
        "startsAt": rfc3339(notice.starts_at),
        "endsAt": rfc3339(ends_at),
    });
    if !external_url.is_empty() {
        alert["generatorURL"] = Value::String(external_url.to_owned());
    }
    json!([alert])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn notice(status: Status, ends_at: Option<i64>) -> Notice {
        Notice {
            fingerprint: "0123456789abcdef".into(),
            status,
            labels: BTreeMap::from([("alertname".into(), "r".into()), ("severity".into(), "critical".into())]),
            annotations: BTreeMap::from([("summary".into(), "1 failure".into())]),
            starts_at: 1_000,
            ends_at,
            receivers: vec!["hook".into()],
            repeat: false,
        }
    }

    #[test]
    fn webhook_payload_is_alertmanager_version_4() {
        let v = webhook(&notice(Status::Firing, None), "hook", "http://alarmer");
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["groupKey"], "0123456789abcdef");
        assert_eq!(v["alerts"][0]["startsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["alerts"][0]["endsAt"], NOT_ENDED);
        assert_eq!(v["commonLabels"]["severity"], "critical");
        let v = webhook(&notice(Status::Resolved, Some(2_000)), "hook", "");
        assert_eq!((v["status"].as_str(), v["alerts"][0]["endsAt"].as_str()), (Some("resolved"), Some("1970-01-01T00:00:02.000Z")));
    }

    #[test]
    fn alertmanager_alerts_carry_their_end() {
        let v = alertmanager(&notice(Status::Firing, None), 241_000, "");
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:04:01.000Z");
        assert!(v[0].get("generatorURL").is_none());
        let v = alertmanager(&notice(Status::Resolved, Some(5_000)), 241_000, "http://x");
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:00:05.000Z");
    }
}
