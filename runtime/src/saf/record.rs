//! The stored form of a [`Message`]: a compact binary record, written by hand with an
//! explicit field order.
//!
//! Records of format 1 were the message's JSON (they begin with `{`); [`decode`] still reads
//! them. Every record written now begins with the tag byte [`BINARY_V1`], which no JSON text
//! can begin with, followed by the fields below. Integers are unsigned LEB128 varints (at
//! most ten bytes, no overlong encodings accepted); a string is its byte length as a varint,
//! then its UTF-8 bytes; the later timestamps are zigzag varints of their (wrapping)
//! difference to `created_at_ms`, so a typical one takes one to four bytes instead of six.
//!
//! | field | encoding |
//! | --- | --- |
//! | tag | `0x01` |
//! | category | one byte, [`Category::ALL`] order |
//! | status | one byte, [`Status::ALL`] order |
//! | flags | one byte: bit 0 `next_attempt_at_ms`, bit 1 `last_error` present |
//! | target | string |
//! | payload | string (the payload's JSON text, checked again when read) |
//! | `max_retries` | varint |
//! | backoff | one byte (0 fixed, 1 schedule), then the interval, or a count and the delays |
//! | `created_at_ms` | varint |
//! | `updated_at_ms` | delta |
//! | `next_attempt_at_ms` | delta, when flagged |
//! | `attempts`, `attempts_before_requeue` | varints |
//! | `last_error` | string, when flagged |
//! | history | a count, then per attempt: one byte (outcome in bits 0-1, bit 2 status code, bit 3 error, bit 4 response body present), `at_ms` as a delta, the status code, `duration_ms`, the error, the response body |
//!
//! The message id is not in the record: it is the record's key in the `messages` table,
//! and [`decode`] takes it from there (a JSON record carries its own).
//!
//! Anything that does not decode exactly (an unknown tag, category, status or flag bit, a
//! number out of range, a string past the end or not UTF-8, a payload that is not JSON,
//! bytes left over) is [`SafError::Corrupt`]; decoding never panics and never allocates more
//! than the record's own size.

use serde_json::value::RawValue;

use super::error::SafError;
use super::model::{
    Attempt, AttemptOutcome, Backoff, Category, Message, RetryPolicy, Status, UnixMillis,
};

/// The first byte of a binary record (format 2 of the buffer).
pub(crate) const BINARY_V1: u8 = 0x01;

const FLAG_NEXT_ATTEMPT: u8 = 1 << 0;
const FLAG_LAST_ERROR: u8 = 1 << 1;

const ATTEMPT_OUTCOME_MASK: u8 = 0b11;
const ATTEMPT_STATUS_CODE: u8 = 1 << 2;
const ATTEMPT_ERROR: u8 = 1 << 3;
const ATTEMPT_RESPONSE_BODY: u8 = 1 << 4;

const BACKOFF_FIXED: u8 = 0;
const BACKOFF_SCHEDULE: u8 = 1;

/// The stored record of `message`.
pub(crate) fn encode(message: &Message) -> Vec<u8> {
    let history_size: usize = message
        .history
        .iter()
        .map(|attempt| {
            24 + attempt.error.as_ref().map_or(0, String::len)
                + attempt.response_body.as_ref().map_or(0, String::len)
        })
        .sum();
    let mut out = Vec::with_capacity(
        48 + message.target.len()
            + message.payload.get().len()
            + message.last_error.as_ref().map_or(0, String::len)
            + history_size,
    );
    let created = message.created_at_ms;
    let mut flags = 0;
    if message.next_attempt_at_ms.is_some() {
        flags |= FLAG_NEXT_ATTEMPT;
    }
    if message.last_error.is_some() {
        flags |= FLAG_LAST_ERROR;
    }
    out.push(BINARY_V1);
    out.push(category_code(message.category));
    out.push(status_code(message.status));
    out.push(flags);
    put_str(&mut out, &message.target);
    put_str(&mut out, message.payload.get());
    put_varint(&mut out, u64::from(message.policy.max_retries));
    match &message.policy.backoff {
        Backoff::Fixed { interval_ms } => {
            out.push(BACKOFF_FIXED);
            put_varint(&mut out, *interval_ms);
        }
        Backoff::Schedule { delays_ms } => {
            out.push(BACKOFF_SCHEDULE);
            put_varint(&mut out, delays_ms.len() as u64);
            for delay in delays_ms {
                put_varint(&mut out, *delay);
            }
        }
    }
    put_varint(&mut out, created);
    put_delta(&mut out, created, message.updated_at_ms);
    if let Some(next) = message.next_attempt_at_ms {
        put_delta(&mut out, created, next);
    }
    put_varint(&mut out, u64::from(message.attempts));
    put_varint(&mut out, u64::from(message.attempts_before_requeue));
    if let Some(error) = &message.last_error {
        put_str(&mut out, error);
    }
    put_varint(&mut out, message.history.len() as u64);
    for attempt in &message.history {
        let mut head = outcome_code(attempt.outcome);
        if attempt.status_code.is_some() {
            head |= ATTEMPT_STATUS_CODE;
        }
        if attempt.error.is_some() {
            head |= ATTEMPT_ERROR;
        }
        if attempt.response_body.is_some() {
            head |= ATTEMPT_RESPONSE_BODY;
        }
        out.push(head);
        put_delta(&mut out, created, attempt.at_ms);
        if let Some(code) = attempt.status_code {
            put_varint(&mut out, u64::from(code));
        }
        put_varint(&mut out, attempt.duration_ms);
        if let Some(error) = &attempt.error {
            put_str(&mut out, error);
        }
        if let Some(body) = &attempt.response_body {
            put_str(&mut out, body);
        }
    }
    out
}

/// The message stored under `key` (its id) as `bytes`: a binary record, or a JSON record of
/// format 1.
pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<Message, SafError> {
    let corrupt = |message: String| SafError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message,
    };
    match bytes.first() {
        Some(&BINARY_V1) => decode_binary(key, &bytes[1..]).map_err(|failure| corrupt(failure.0)),
        Some(b'{') => serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string())),
        Some(other) => Err(corrupt(format!("unknown record tag {other:#04x}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

/// Why a binary record did not decode.
struct Failure(String);

fn decode_binary(key: &[u8], bytes: &[u8]) -> Result<Message, Failure> {
    let id = std::str::from_utf8(key)
        .map_err(|_| Failure("the key (message id) is not UTF-8".to_owned()))?
        .to_owned();
    let mut input = Input { rest: bytes };
    let category = category_of(input.byte("category")?)?;
    let status = status_of(input.byte("status")?)?;
    let flags = input.byte("flags")?;
    if flags & !(FLAG_NEXT_ATTEMPT | FLAG_LAST_ERROR) != 0 {
        return Err(Failure(format!("unknown flags {flags:#04x}")));
    }
    let target = input.string("target")?;
    let payload = RawValue::from_string(input.string("payload")?)
        .map_err(|error| Failure(format!("payload is not JSON: {error}")))?;
    let max_retries = input.u32("max_retries")?;
    let backoff = match input.byte("backoff")? {
        BACKOFF_FIXED => Backoff::Fixed {
            interval_ms: input.varint("interval_ms")?,
        },
        BACKOFF_SCHEDULE => {
            let count = input.count("delays_ms", 1)?;
            let mut delays_ms = Vec::with_capacity(count);
            for _ in 0..count {
                delays_ms.push(input.varint("delays_ms")?);
            }
            Backoff::Schedule { delays_ms }
        }
        other => return Err(Failure(format!("unknown backoff {other}"))),
    };
    let created_at_ms = input.varint("created_at_ms")?;
    let updated_at_ms = input.delta("updated_at_ms", created_at_ms)?;
    let next_attempt_at_ms = if flags & FLAG_NEXT_ATTEMPT != 0 {
        Some(input.delta("next_attempt_at_ms", created_at_ms)?)
    } else {
        None
    };
    let attempts = input.u32("attempts")?;
    let attempts_before_requeue = input.u32("attempts_before_requeue")?;
    let last_error = if flags & FLAG_LAST_ERROR != 0 {
        Some(input.string("last_error")?)
    } else {
        None
    };
    // An attempt takes at least three bytes: head, time, duration.
    let count = input.count("history", 3)?;
    let mut history = Vec::with_capacity(count);
    for _ in 0..count {
        let head = input.byte("attempt")?;
        if head
            & !(ATTEMPT_OUTCOME_MASK | ATTEMPT_STATUS_CODE | ATTEMPT_ERROR | ATTEMPT_RESPONSE_BODY)
            != 0
        {
            return Err(Failure(format!("unknown attempt flags {head:#04x}")));
        }
        let outcome = outcome_of(head & ATTEMPT_OUTCOME_MASK)?;
        let at_ms = input.delta("attempt at_ms", created_at_ms)?;
        let status_code = if head & ATTEMPT_STATUS_CODE != 0 {
            let code = input.varint("status_code")?;
            Some(u16::try_from(code).map_err(|_| Failure(format!("status code {code}")))?)
        } else {
            None
        };
        let duration_ms = input.varint("duration_ms")?;
        let error = if head & ATTEMPT_ERROR != 0 {
            Some(input.string("attempt error")?)
        } else {
            None
        };
        let response_body = if head & ATTEMPT_RESPONSE_BODY != 0 {
            Some(input.string("response_body")?)
        } else {
            None
        };
        history.push(Attempt {
            at_ms,
            outcome,
            status_code,
            error,
            duration_ms,
            response_body,
        });
    }
    if !input.rest.is_empty() {
        return Err(Failure(format!(
            "{} bytes after the end of the record",
            input.rest.len()
        )));
    }
    Ok(Message {
        id,
        category,
        target,
        payload,
        policy: RetryPolicy {
            max_retries,
            backoff,
        },
        status,
        created_at_ms,
        updated_at_ms,
        next_attempt_at_ms,
        attempts,
        attempts_before_requeue,
        last_error,
        history,
    })
}

fn category_code(category: Category) -> u8 {
    match category {
        Category::ExternalCall => 0,
        Category::Notification => 1,
        Category::CachedWrite => 2,
        Category::Webhook => 3,
    }
}

fn category_of(code: u8) -> Result<Category, Failure> {
    Category::ALL
        .into_iter()
        .find(|category| category_code(*category) == code)
        .ok_or_else(|| Failure(format!("unknown category {code}")))
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::Pending => 0,
        Status::Retrying => 1,
        Status::Delivered => 2,
        Status::Parked => 3,
        Status::Discarded => 4,
    }
}

fn status_of(code: u8) -> Result<Status, Failure> {
    Status::ALL
        .into_iter()
        .find(|status| status_code(*status) == code)
        .ok_or_else(|| Failure(format!("unknown status {code}")))
}

fn outcome_code(outcome: AttemptOutcome) -> u8 {
    match outcome {
        AttemptOutcome::Delivered => 0,
        AttemptOutcome::Transient => 1,
        AttemptOutcome::Permanent => 2,
    }
}

fn outcome_of(code: u8) -> Result<AttemptOutcome, Failure> {
    match code {
        0 => Ok(AttemptOutcome::Delivered),
        1 => Ok(AttemptOutcome::Transient),
        2 => Ok(AttemptOutcome::Permanent),
        other => Err(Failure(format!("unknown attempt outcome {other}"))),
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `value` as the zigzag varint of its wrapping difference to `base`: exact for every pair
/// of `u64`s, short when they are close.
fn put_delta(out: &mut Vec<u8>, base: UnixMillis, value: UnixMillis) {
    let difference = value.wrapping_sub(base) as i64;
    put_varint(out, ((difference << 1) ^ (difference >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The unread part of a binary record.
struct Input<'a> {
    rest: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self, what: &str) -> Result<u8, Failure> {
        let (&first, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| Failure(format!("record ends before {what}")))?;
        self.rest = rest;
        Ok(first)
    }

    fn varint(&mut self, what: &str) -> Result<u64, Failure> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the top bit of a u64; a last byte of 0 (other
            // than a lone 0) is an overlong encoding.
            if shift == 63 && bits > 1 {
                return Err(Failure(format!("{what} does not fit in 64 bits")));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(Failure(format!("{what} is an overlong varint")));
                }
                return Ok(value);
            }
        }
        Err(Failure(format!("{what} does not fit in 64 bits")))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Failure> {
        let value = self.varint(what)?;
        u32::try_from(value).map_err(|_| Failure(format!("{what} {value} does not fit in 32 bits")))
    }

    fn delta(&mut self, what: &str, base: UnixMillis) -> Result<UnixMillis, Failure> {
        let zigzag = self.varint(what)?;
        let difference = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        Ok(base.wrapping_add(difference as u64))
    }

    /// A count of items that take at least `min_item_bytes` each: never more than what the
    /// rest of the record could hold, so a damaged count cannot reserve a huge vector.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize, Failure> {
        let count = self.varint(what)?;
        match usize::try_from(count) {
            Ok(count) if count <= self.rest.len() / min_item_bytes => Ok(count),
            _ => Err(Failure(format!(
                "{what} claims {count} items in {} bytes",
                self.rest.len()
            ))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, Failure> {
        let length = self.varint(what)?;
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= self.rest.len())
            .ok_or_else(|| {
                Failure(format!(
                    "{what} of {length} bytes in the {} bytes left",
                    self.rest.len()
                ))
            })?;
        let (text, rest) = self.rest.split_at(length);
        self.rest = rest;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| Failure(format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Every field, in JSON (which shows `None` and `Some` apart, and the payload's text).
    fn fields(message: &Message) -> String {
        serde_json::to_string(message).expect("a message serialises")
    }

    fn sample() -> Message {
        Message {
            id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
            category: Category::ExternalCall,
            target: "MES/PostReading".to_owned(),
            payload: serde_json::value::to_raw_value(&json!({
                "system": "MES", "method": "PostReading",
                "params": { "pump": "PUMP-001", "value": 17 }
            }))
            .expect("payload"),
            policy: RetryPolicy::fixed(5, std::time::Duration::from_secs(30)),
            status: Status::Pending,
            created_at_ms: 1_763_900_000_000,
            updated_at_ms: 1_763_900_000_000,
            next_attempt_at_ms: Some(1_763_900_000_000),
            attempts: 0,
            attempts_before_requeue: 0,
            last_error: None,
            history: Vec::new(),
        }
    }

    /// A record as format 1 wrote it (serde_json of `Message`), with history.
    const JSON_RECORD: &str = r#"{"id":"order-17","category":"webhook","target":"erp/orders","payload":{"event":"order.created","data":{"id":17,"note":"caf\u00e9 \"quoted\""}},"policy":{"max_retries":3,"backoff":{"schedule":{"delays_ms":[1000,60000]}}},"status":"retrying","created_at_ms":1763900000000,"updated_at_ms":1763900001500,"next_attempt_at_ms":1763900061500,"attempts":2,"attempts_before_requeue":0,"last_error":"HTTP 503","history":[{"at_ms":1763900000100,"outcome":"transient","status_code":503,"error":"HTTP 503","duration_ms":12,"response_body":"busy"},{"at_ms":1763900001400,"outcome":"transient","duration_ms":100}]}"#;

    #[test]
    fn reads_a_json_record_of_format_1() {
        let message = decode(b"order-17", JSON_RECORD.as_bytes()).expect("decodes");
        assert_eq!(message.id, "order-17");
        assert_eq!(message.category, Category::Webhook);
        assert_eq!(message.target, "erp/orders");
        assert_eq!(
            message.payload.get(),
            r#"{"event":"order.created","data":{"id":17,"note":"caf\u00e9 \"quoted\""}}"#
        );
        assert_eq!(
            message.policy.backoff,
            Backoff::Schedule {
                delays_ms: vec![1000, 60000]
            }
        );
        assert_eq!(message.status, Status::Retrying);
        assert_eq!(message.next_attempt_at_ms, Some(1_763_900_061_500));
        assert_eq!(message.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(message.history.len(), 2);
        assert_eq!(message.history[0].status_code, Some(503));
        assert_eq!(message.history[0].response_body.as_deref(), Some("busy"));
        assert_eq!(message.history[1].error, None);
        // Written again, it is binary and reads back the same.
        let binary = encode(&message);
        assert_eq!(binary[0], BINARY_V1);
        let again = decode(b"order-17", &binary).expect("binary decodes");
        assert_eq!(fields(&again), fields(&message));
        assert!(
            binary.len() < JSON_RECORD.len() / 2,
            "{} bytes",
            binary.len()
        );
    }

    #[test]
    fn the_bench_message_is_well_under_half_its_json() {
        let message = sample();
        let json = serde_json::to_vec(&message).expect("json");
        let binary = encode(&message);
        // 426 bytes of JSON against 116 binary, of which 79 are the payload's JSON text and
        // 15 the target; the id (36 bytes) is the record's key and not repeated inside.
        assert_eq!((json.len(), binary.len()), (426, 116));
        assert_eq!(message.payload.get().len(), 79);
        assert_eq!(
            fields(&decode(message.id.as_bytes(), &binary).expect("decodes")),
            fields(&message)
        );
    }

    #[test]
    fn damaged_records_are_corrupt() {
        let message = sample();
        let record = encode(&message);
        let corrupt = |bytes: &[u8]| matches!(decode(b"id", bytes), Err(SafError::Corrupt { .. }));
        assert!(corrupt(b""));
        assert!(corrupt(b"\x02rest"));
        assert!(corrupt(b"{\"id\":"));
        for end in 0..record.len() {
            assert!(corrupt(&record[..end]), "a record cut to {end} bytes");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(corrupt(&longer));
        // The payload is checked: its text is JSON.
        let mut bad_payload = record.clone();
        let text = message.payload.get().as_bytes();
        let at = record
            .windows(text.len())
            .position(|window| window == text)
            .expect("payload text");
        bad_payload[at] = b'[';
        assert!(corrupt(&bad_payload));
        // A key that is not UTF-8 cannot be an id.
        assert!(matches!(
            decode(b"\xff", &record),
            Err(SafError::Corrupt { .. })
        ));
    }

    #[test]
    fn varints_take_every_u64_and_refuse_overlong_forms() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut input = Input { rest: &out };
            assert_eq!(input.varint("v").ok(), Some(value));
            assert!(input.rest.is_empty());
        }
        for bad in [
            &[0x80, 0x00][..],
            &[0xff; 10][..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..],
            &[0x80][..],
        ] {
            assert!(Input { rest: bad }.varint("v").is_err(), "{bad:?}");
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn attempt() -> impl Strategy<Value = Attempt> {
        (
            any::<u64>(),
            prop::sample::select(vec![
                AttemptOutcome::Delivered,
                AttemptOutcome::Transient,
                AttemptOutcome::Permanent,
            ]),
            any::<Option<u16>>(),
            any::<Option<String>>(),
            any::<u64>(),
            any::<Option<String>>(),
        )
            .prop_map(
                |(at_ms, outcome, status_code, error, duration_ms, response_body)| Attempt {
                    at_ms,
                    outcome,
                    status_code,
                    error,
                    duration_ms,
                    response_body,
                },
            )
    }

    fn backoff() -> impl Strategy<Value = Backoff> {
        prop_oneof![
            any::<u64>().prop_map(|interval_ms| Backoff::Fixed { interval_ms }),
            prop::collection::vec(any::<u64>(), 0..5)
                .prop_map(|delays_ms| Backoff::Schedule { delays_ms }),
        ]
    }

    /// Times near now (the usual case, small deltas) or anywhere in `u64`.
    fn time() -> impl Strategy<Value = u64> {
        prop_oneof![1_763_900_000_000u64..1_763_999_999_999, any::<u64>()]
    }

    fn message() -> impl Strategy<Value = Message> {
        let head = (
            "[^\\x00]{1,40}",
            prop::sample::select(Category::ALL.to_vec()),
            any::<String>(),
            json_value(),
            any::<u32>(),
            backoff(),
            prop::sample::select(Status::ALL.to_vec()),
        );
        let tail = (
            time(),
            time(),
            prop::option::of(time()),
            any::<u32>(),
            any::<u32>(),
            any::<Option<String>>(),
            prop::collection::vec(attempt(), 0..4),
        );
        (head, tail).prop_map(
            |(
                (id, category, target, payload, max_retries, backoff, status),
                (
                    created_at_ms,
                    updated_at_ms,
                    next_attempt_at_ms,
                    attempts,
                    attempts_before_requeue,
                    last_error,
                    history,
                ),
            )| Message {
                id,
                category,
                target,
                payload: serde_json::value::to_raw_value(&payload).expect("payload"),
                policy: RetryPolicy {
                    max_retries,
                    backoff,
                },
                status,
                created_at_ms,
                updated_at_ms,
                next_attempt_at_ms,
                attempts,
                attempts_before_requeue,
                last_error,
                history,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn binary_and_json_records_round_trip(message in message()) {
            let binary = encode(&message);
            prop_assert_eq!(binary[0], BINARY_V1);
            let decoded = decode(message.id.as_bytes(), &binary);
            prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
            prop_assert_eq!(fields(&decoded.unwrap()), fields(&message));
            let json = serde_json::to_vec(&message).expect("json");
            let decoded = decode(message.id.as_bytes(), &json);
            prop_assert!(decoded.is_ok(), "{:?}", decoded.err());
            prop_assert_eq!(fields(&decoded.unwrap()), fields(&message));
        }

        #[test]
        fn arbitrary_bytes_decode_or_are_corrupt(
            message in message(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut record = encode(&message);
            for (index, byte) in flips {
                let at = index.index(record.len());
                record[at] = byte;
            }
            match decode(message.id.as_bytes(), &record) {
                Ok(_) | Err(SafError::Corrupt { .. }) => {}
                Err(other) => prop_assert!(false, "{other}"),
            }
            let mut random = vec![BINARY_V1];
            random.extend_from_slice(&tail);
            match decode(b"id", &random) {
                Ok(_) | Err(SafError::Corrupt { .. }) => {}
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
