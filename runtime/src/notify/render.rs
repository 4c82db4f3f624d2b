//! An [`Email`] as bytes on the wire, with lettre's message builder.
//!
//! The message has `From` and `To` set to the sender, no `Cc` or `Bcc` header, `Subject`
//! encoded per RFC 2047 when it is not plain ASCII, `Date` from when the script sent it,
//! `Message-ID` from the delivery id, and one `text/plain; charset=utf-8` part whose transfer
//! encoding lettre picks (7bit, quoted-printable or base64) so the bytes are ASCII. The
//! envelope is the sender and the recipients: they receive it as BCC.

use std::time::{Duration, UNIX_EPOCH};

use lettre::address::{Address, Envelope};
use lettre::message::{Mailbox, Message, SinglePart};

use scl_stdlib::notify::{Email, SmtpFailure};

/// The envelope and the formatted message. An address that does not parse is a permanent
/// [`SmtpFailure::InvalidMessage`].
pub fn render(email: &Email) -> Result<(Envelope, Vec<u8>), SmtpFailure> {
    let invalid = |detail: String| SmtpFailure::InvalidMessage { detail };
    let from: Address = email.from.parse().map_err(|error| {
        invalid(format!(
            "the from address `{}` is not valid: {error}",
            email.from
        ))
    })?;
    let mut recipients = Vec::with_capacity(email.recipients.len());
    for recipient in &email.recipients {
        let address: Address = recipient.parse().map_err(|error| {
            invalid(format!(
                "recipient `{recipient}` is not a valid address: {error}"
            ))
        })?;
        recipients.push(address);
    }
    let envelope = Envelope::new(Some(from.clone()), recipients)
        .map_err(|error| invalid(format!("cannot build the envelope: {error}")))?;
    let sender = Mailbox::new(None, from);
    let message = Message::builder()
        .from(sender.clone())
        .to(sender)
        .subject(email.subject.clone())
        .date(UNIX_EPOCH + Duration::from_millis(email.created_at_ms))
        .message_id(Some(email.message_id()))
        .envelope(envelope.clone())
        .singlepart(SinglePart::plain(email.body.clone()))
        .map_err(|error| invalid(format!("cannot build the message: {error}")))?;
    Ok((envelope, message.formatted()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(subject: &str, body: &str) -> Email {
        Email::compose(
            "0190aaaa-0000-7000-8000-000000000001",
            "Operators",
            "scada@plant.example",
            &[
                "op1@plant.example".to_owned(),
                "op2@plant.example".to_owned(),
            ],
            subject,
            body,
            1_700_000_000_000,
        )
    }

    fn headers(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.split("\r\n\r\n").next().unwrap().to_owned()
    }

    #[test]
    fn recipients_are_only_in_the_envelope() {
        let (envelope, bytes) = render(&email("Hot", "Pump is hot")).unwrap();
        let head = headers(&bytes);
        assert!(!head.contains("op1@plant.example"), "{head}");
        assert!(!head.contains("op2@plant.example"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("bcc:"), "{head}");
        assert!(head.contains("To: scada@plant.example"), "{head}");
        assert!(head.contains("From: scada@plant.example"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; charset=utf-8"),
            "{head}"
        );
        assert!(
            head.contains("Message-ID: <0190aaaa-0000-7000-8000-000000000001@plant.example>"),
            "{head}"
        );
        let to: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["op1@plant.example", "op2@plant.example"]);
        assert_eq!(
            envelope.from().map(ToString::to_string).as_deref(),
            Some("scada@plant.example")
        );
    }

    #[test]
    fn utf8_is_encoded_and_the_message_is_ascii() {
        let (_, bytes) =
            render(&email("Température élevée ✓", "Pompe à 90 °C — vérifier")).unwrap();
        assert!(bytes.is_ascii());
        let head = headers(&bytes);
        assert!(head.contains("Subject: =?utf-8?"), "{head}");
    }

    #[test]
    fn a_bad_address_is_a_permanent_failure() {
        let mut broken = email("s", "b");
        broken.recipients.push("not an address".to_owned());
        let failure = render(&broken).unwrap_err();
        assert!(matches!(failure, SmtpFailure::InvalidMessage { .. }));
        assert_eq!(failure.kind(), scl_stdlib::notify::FailureKind::Permanent);
    }
}
