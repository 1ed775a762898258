//! Domain types shared by the store, the API and the sockets (ARCHITECTURE §4 names).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {:?} (expected one of: {})",
                        stringify!($name).to_lowercase(),
                        other,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What a user may do; enforced server-side on every route and socket.
    Role { Agent = "agent", Supervisor = "supervisor", Admin = "admin" }
);
string_enum!(CustomerKind { Person = "person", Company = "company" });
string_enum!(IdentityKind { Phone = "phone", Email = "email", Fax = "fax", Chat = "chat" });
string_enum!(Channel {
    Voice = "voice", Email = "email", Fax = "fax", Chat = "chat", Callback = "callback", Outbound = "outbound"
});
string_enum!(Direction { Inbound = "inbound", Outbound = "outbound" });
string_enum!(ContactState {
    Queued = "queued", Offered = "offered", Connected = "connected", WrapUp = "wrap_up",
    Closed = "closed", Abandoned = "abandoned", Failed = "failed"
});
string_enum!(
    /// The five archive categories of the customer file.
    RecordCategory {
        Order = "order", Payment = "payment", Transaction = "transaction", Return = "return", Document = "document"
    }
);
string_enum!(CaseStatus { Open = "open", Pending = "pending", Closed = "closed" });

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub kind: IdentityKind,
    /// E.164 for phone and fax, lower-cased for email.
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    pub id: i64,
    pub kind: CustomerKind,
    pub name: String,
    pub tier: String,
    pub tags: Vec<String>,
    pub preferred_channel: Option<Channel>,
    pub language: Option<String>,
    pub do_not_call: bool,
    pub do_not_email: bool,
    pub notes: String,
    /// The company's own key for this customer (e.g. from its ERP); re-imports update by it.
    pub external_ref: Option<String>,
    pub identities: Vec<Identity>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// Fields of a customer as written by a client or an import row, before normalization.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub kind: Option<CustomerKind>,
    pub name: Option<String>,
    pub tier: Option<String>,
    pub tags: Option<Vec<String>>,
    pub preferred_channel: Option<Channel>,
    pub language: Option<String>,
    pub do_not_call: Option<bool>,
    pub do_not_email: Option<bool>,
    pub notes: Option<String>,
    pub external_ref: Option<String>,
    /// Phone numbers in any format; read in `region` (or the configured default) when local.
    pub phones: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
    pub faxes: Option<Vec<String>>,
    pub chat_ids: Option<Vec<String>>,
    /// ISO region for local phone formats in this input, e.g. "TW".
    pub region: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArchiveRecord {
    pub id: i64,
    pub category: RecordCategory,
    pub reference: String,
    pub description: String,
    /// Minor currency units (fen, cents). For payments: positive = owed by the customer.
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub status: String,
    /// ISO date.
    pub occurred_on: Option<String>,
    /// ISO date; documents only.
    pub expires_on: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRecordInput {
    pub category: RecordCategory,
    pub reference: String,
    #[serde(default)]
    pub description: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    #[serde(default)]
    pub status: String,
    pub occurred_on: Option<String>,
    pub expires_on: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub id: i64,
    pub channel: Channel,
    pub direction: Direction,
    pub customer_id: Option<i64>,
    pub case_id: Option<i64>,
    pub queue: Option<String>,
    pub state: ContactState,
    pub priority: i64,
    pub subject: Option<String>,
    pub agent_id: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub connected_at: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<String>,
    /// The chat or email thread this contact belongs to.
    pub conversation_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Case {
    pub id: i64,
    pub customer_id: Option<i64>,
    pub subject: String,
    pub status: CaseStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactEvent {
    pub id: i64,
    pub contact_id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: String,
    pub kind: String,
    pub state: Option<ContactState>,
    pub agent_id: Option<i64>,
    pub queue: Option<String>,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queue {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub description: String,
}

/// Unix milliseconds → RFC 3339 (UTC), the API's time format.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
