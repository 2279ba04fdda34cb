//! Who is calling, as decisions see it: the identity and the grant it holds.

use super::grants::Grant;
use super::identity::Identity;
use super::Policy;

/// Who is calling, as far as decisions go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub identity: Option<&'a Identity>,
    pub grant: Option<&'a Grant>,
}

impl<'a> Caller<'a> {
    pub fn new(policy: &'a Policy, identity: Option<&'a Identity>) -> Self {
        // Callers without identity still fall under a grant for every identity (`*`).
        let grant = policy.grants.find(
            identity.map_or("", |i| i.value.as_str()),
            identity.is_some_and(|i| i.secret),
        );
        Caller { identity, grant }
    }
}
