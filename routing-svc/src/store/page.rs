//! Keyset pagination with opaque page tokens (AIP-158): a token is the base64 of the
//! list's name and the sort key of the last item returned.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// A validated page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Items to return.
    pub size: i64,
    /// Sort key of the last item of the previous page; `None` for the first page.
    pub after: Option<Vec<String>>,
}

impl PageRequest {
    /// Validates `page_size` (the contract's list sizes: 0 means 50, at most 500) and
    /// decodes `page_token` of list `list`.
    pub fn parse(list: &str, page_size: i32, page_token: &str) -> Result<PageRequest> {
        let size = switchboard_server_kit::page::LIST
            .size(page_size)
            .map_err(|description| Error::invalid("page_size", description))?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(list, page_token)?)
        };
        Ok(PageRequest { size, after })
    }

    /// The sort key to start after, or values that sort before everything.
    pub fn after_or(&self, first: &[&str]) -> Vec<String> {
        self.after
            .clone()
            .unwrap_or_else(|| first.iter().map(|s| (*s).to_owned()).collect())
    }

    /// The (text, id) sort key to start after; both empty on the first page.
    pub fn after_text_and_id(&self) -> Result<(String, String)> {
        match self.after_or(&["", ""]).as_slice() {
            [text, id] => Ok((text.clone(), id.clone())),
            _ => Err(bad_token()),
        }
    }

    /// The (time, id) sort key to start after; `first` and an empty id on the first page.
    pub fn after_time_and_id(&self, first: i64) -> Result<(i64, String)> {
        match self.after_or(&[&first.to_string(), ""]).as_slice() {
            [time, id] => Ok((time.parse().map_err(|_| bad_token())?, id.clone())),
            _ => Err(bad_token()),
        }
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }
}

/// Cuts `items` (fetched with [`PageRequest::fetch_limit`]) to the page and returns the
/// token of the next page, built from the last item's sort key.
pub fn finish<T>(
    list: &str,
    request: &PageRequest,
    mut items: Vec<T>,
    key: impl Fn(&T) -> Vec<String>,
) -> (Vec<T>, String) {
    let size = usize::try_from(request.size).unwrap_or(usize::MAX);
    if items.len() <= size {
        return (items, String::new());
    }
    items.truncate(size);
    let token = items
        .last()
        .map(|last| encode(list, &key(last)))
        .unwrap_or_default();
    (items, token)
}

fn encode(list: &str, key: &[String]) -> String {
    let mut parts = vec![list.to_owned()];
    parts.extend(key.iter().cloned());
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&parts).expect("strings serialize"))
}

/// INVALID_ARGUMENT for a page token this list did not hand out.
fn bad_token() -> Error {
    Error::invalid("page_token", "is not a token returned by this list")
}

fn decode(list: &str, token: &str) -> Result<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token())?;
    let mut parts: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| bad_token())?;
    if parts.first().map(String::as_str) != Some(list) {
        return Err(bad_token());
    }
    parts.remove(0);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_clamp_and_refuse_negatives() {
        assert_eq!(PageRequest::parse("p", 0, "").unwrap().size, 50);
        assert_eq!(PageRequest::parse("p", 7, "").unwrap().size, 7);
        assert_eq!(PageRequest::parse("p", 9_999, "").unwrap().size, 500);
        assert!(PageRequest::parse("p", -1, "").is_err());
    }

    #[test]
    fn tokens_round_trip_and_belong_to_one_list() {
        let request = PageRequest::parse("programs", 2, "").unwrap();
        let (items, token) = finish("programs", &request, vec!["a", "b", "c"], |s| {
            vec![(*s).to_owned(), "id".to_owned()]
        });
        assert_eq!(items, ["a", "b"]);
        let next = PageRequest::parse("programs", 2, &token).unwrap();
        assert_eq!(next.after, Some(vec!["b".to_owned(), "id".to_owned()]));
        assert!(PageRequest::parse("queues", 2, &token).is_err());
        assert!(PageRequest::parse("programs", 2, "garbage!").is_err());
        let (_, last) = finish("programs", &request, vec!["a"], |s| vec![(*s).to_owned()]);
        assert!(last.is_empty());
    }

    #[test]
    fn sort_keys_start_before_everything_and_refuse_foreign_shapes() {
        let first = PageRequest::parse("p", 1, "").unwrap();
        assert_eq!(
            first.after_text_and_id().unwrap(),
            (String::new(), String::new())
        );
        assert_eq!(
            first.after_time_and_id(i64::MIN).unwrap(),
            (i64::MIN, String::new())
        );
        let (_, token) = finish("p", &first, vec![7_i64, 8], |t| {
            vec![t.to_string(), "id".into()]
        });
        let next = PageRequest::parse("p", 1, &token).unwrap();
        assert_eq!(next.after_time_and_id(0).unwrap(), (7, "id".to_owned()));
        let (_, token) = finish("p", &first, vec!["x", "y"], |s| vec![(*s).to_owned()]);
        let short = PageRequest::parse("p", 1, &token).unwrap();
        assert!(short.after_text_and_id().is_err());
        let (_, token) = finish("p", &first, vec!["x", "y"], |s| {
            vec![(*s).to_owned(), "id".into()]
        });
        let text = PageRequest::parse("p", 1, &token).unwrap();
        assert!(text.after_time_and_id(0).is_err());
    }
}
