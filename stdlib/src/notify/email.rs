//! The email one `Send` makes (CD-NS-1, CD-NS-2, KDD-ext-4): one message per call, the from
//! address in `From` and in `To`, every recipient of the list in BCC only (in the SMTP envelope,
//! never in a header), plain text, no deduplication.
//!
//! An [`Email`] is also the store-and-forward payload of a buffered notification: it carries
//! everything needed to send the same message again (recipients resolved when the script
//! sent it, the creation time for the `Date` header, the delivery id for `Message-ID`), so
//! every attempt sends the identical message and a changed deployment does not rewrite
//! messages already buffered.

use serde::{Deserialize, Serialize};

/// The payload format version written into every buffered notification.
pub const EMAIL_FORMAT: u32 = 1;

/// One notification email, ready to render and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// The payload format ([`EMAIL_FORMAT`]).
    pub format: u32,
    /// The delivery id the script got; also the local part of `Message-ID`.
    pub delivery_id: String,
    /// The notification list it was sent to.
    pub list: String,
    /// The sender: `From`, `To` and `MAIL FROM`.
    pub from: String,
    /// The list's recipients, in the deployment's order and with duplicates kept
    /// (CD-NS-2): the `RCPT TO` addresses, never a header.
    pub recipients: Vec<String>,
    /// The subject, on one line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// When the script sent it, in milliseconds since the Unix epoch (the `Date` header).
    pub created_at_ms: u64,
}

impl Email {
    /// The email for one `Send`. Control characters in the subject (line breaks, tabs) become
    /// spaces: a subject is one header line, and a line break in it must never start a new
    /// header. The body is kept as given.
    pub fn compose(
        delivery_id: impl Into<String>,
        list: impl Into<String>,
        from: impl Into<String>,
        recipients: &[String],
        subject: &str,
        body: &str,
        created_at_ms: u64,
    ) -> Email {
        Email {
            format: EMAIL_FORMAT,
            delivery_id: delivery_id.into(),
            list: list.into(),
            from: from.into(),
            recipients: recipients.to_vec(),
            subject: one_line(subject),
            body: body.to_owned(),
            created_at_ms,
        }
    }

    /// The `To` header's address: the sender itself, so that no recipient sees another.
    pub fn header_to(&self) -> &str {
        &self.from
    }

    /// `Message-ID`: `<delivery id@domain of the sender>`, the same on every attempt, so the
    /// receiving side can recognise a message delivered twice (delivery is at-least-once).
    pub fn message_id(&self) -> String {
        let domain = self
            .from
            .rsplit_once('@')
            .map_or("localhost", |(_, domain)| domain);
        let domain = domain.trim_end_matches('>');
        format!(
            "<{}@{}>",
            self.delivery_id,
            if domain.is_empty() {
                "localhost"
            } else {
                domain
            }
        )
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(recipients: &[&str], subject: &str) -> Email {
        let recipients: Vec<String> = recipients.iter().map(|r| (*r).to_owned()).collect();
        Email::compose(
            "0190-abc",
            "Operators",
            "scada@plant.example",
            &recipients,
            subject,
            "body",
            1,
        )
    }

    #[test]
    fn the_sender_is_the_only_visible_recipient() {
        let email = email(&["a@x.example", "b@x.example"], "High temperature");
        assert_eq!(email.header_to(), "scada@plant.example");
        assert_eq!(email.recipients, ["a@x.example", "b@x.example"]);
    }

    #[test]
    fn duplicates_are_kept() {
        let email = email(&["a@x.example", "a@x.example"], "s");
        assert_eq!(email.recipients.len(), 2);
    }

    #[test]
    fn subject_line_breaks_cannot_inject_headers() {
        let email = email(&["a@x.example"], "Alarm\r\nBcc: evil@x.example\tnow");
        assert_eq!(email.subject, "Alarm  Bcc: evil@x.example now");
        assert!(!email.subject.contains('\n'));
    }

    #[test]
    fn message_id_is_stable_and_uses_the_sender_domain() {
        let email = email(&["a@x.example"], "s");
        assert_eq!(email.message_id(), "<0190-abc@plant.example>");
        assert_eq!(email.message_id(), email.clone().message_id());
    }

    #[test]
    fn payload_round_trips() {
        let email = email(&["a@x.example"], "Température élevée ✓");
        let json = serde_json::to_string(&email).unwrap();
        let back: Email = serde_json::from_str(&json).unwrap();
        assert_eq!(back, email);
    }
}
