//! Which tenant a call acts in when its request names one (product rule 2): users of a parent
//! tenant with access to conversations (supervisors and administrators) reach the
//! conversations of its descendant tenants, as a supervisor of that tenant would; nobody
//! reaches a sibling, an ancestor or an unrelated tenant, and the answer never tells such a
//! tenant from one that does not exist.

/// Where a call acts, before the directory is asked anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The caller's own tenant: nothing named, or the caller's own tenant named.
    Own,
    /// Another tenant, reached only if it is a descendant of the caller's tenant
    /// ([`check_descendant`] with its ancestry).
    Other(&'a str),
}

/// Why a named tenant is not reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReachRefusal {
    /// The caller is neither a supervisor nor an administrator of its tenant. Said whatever
    /// tenant is named, so that it tells nothing about that tenant.
    #[error("reaching a child tenant's conversations needs the role SUPERVISOR or ADMINISTRATOR")]
    RoleRequired,
    /// The named tenant is not a descendant of the caller's: a sibling, an ancestor, an
    /// unrelated tenant and an unknown one alike.
    #[error("tenant not found")]
    NotFound,
}

/// Where a caller of tenant `caller_tenant` acts when its request names `named` (empty for
/// none); `oversees` says whether the caller is a supervisor or administrator of its tenant,
/// the roles that reach descendant tenants.
pub fn scope<'a>(
    caller_tenant: &str,
    named: &'a str,
    oversees: bool,
) -> Result<Scope<'a>, ReachRefusal> {
    if named.is_empty() || named == caller_tenant {
        Ok(Scope::Own)
    } else if oversees {
        Ok(Scope::Other(named))
    } else {
        Err(ReachRefusal::RoleRequired)
    }
}

/// Whether a tenant whose ancestors (parent first, as the directory answers them) are
/// `named_ancestors` is a descendant of `caller_tenant`: a child, or a child's child, and so
/// on. A tenant the directory does not know has no ancestors, hence is not found.
pub fn check_descendant<S: AsRef<str>>(
    caller_tenant: &str,
    named_ancestors: &[S],
) -> Result<(), ReachRefusal> {
    if !caller_tenant.is_empty() && named_ancestors.iter().any(|a| a.as_ref() == caller_tenant) {
        Ok(())
    } else {
        Err(ReachRefusal::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "parent";
    const CHILD: &str = "child";
    const GRANDCHILD: &str = "grandchild";
    const SIBLING: &str = "sibling";

    #[test]
    fn naming_nothing_or_ones_own_tenant_acts_there_whatever_the_role() {
        for oversees in [false, true] {
            assert_eq!(scope(CHILD, "", oversees), Ok(Scope::Own));
            assert_eq!(scope(CHILD, CHILD, oversees), Ok(Scope::Own));
        }
    }

    #[test]
    fn only_supervisors_and_administrators_name_another_tenant() {
        assert_eq!(scope(PARENT, CHILD, true), Ok(Scope::Other(CHILD)));
        // Refused before the tenant is looked at: the same answer for any tenant.
        for named in [CHILD, SIBLING, "unknown"] {
            assert_eq!(
                scope(PARENT, named, false),
                Err(ReachRefusal::RoleRequired),
                "{named}"
            );
        }
    }

    #[test]
    fn descendants_at_any_depth_are_within_reach() {
        assert_eq!(check_descendant(PARENT, &[PARENT]), Ok(()));
        assert_eq!(check_descendant(PARENT, &[CHILD, PARENT]), Ok(()));
        assert_eq!(check_descendant(CHILD, &[CHILD, PARENT]), Ok(()));
    }

    #[test]
    fn siblings_ancestors_and_unknown_tenants_are_not_found() {
        // A sibling shares the parent, which is not the caller's tenant.
        assert_eq!(
            check_descendant(SIBLING, &[PARENT]),
            Err(ReachRefusal::NotFound)
        );
        // A child naming its parent (a top-level tenant: no ancestors).
        let none: [&str; 0] = [];
        assert_eq!(check_descendant(CHILD, &none), Err(ReachRefusal::NotFound));
        // A grandchild naming its grandparent's other child.
        assert_eq!(
            check_descendant(GRANDCHILD, &[PARENT]),
            Err(ReachRefusal::NotFound)
        );
        // A tenant the directory does not know, and a caller without a tenant.
        assert_eq!(check_descendant(PARENT, &none), Err(ReachRefusal::NotFound));
        assert_eq!(check_descendant("", &[""]), Err(ReachRefusal::NotFound));
    }
}
