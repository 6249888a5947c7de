//! Pagination (AIP-158): a page size and an opaque token that resumes after the last item
//! of the previous page, by its sort key and id, so that inserts never shift pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::directory::FieldError;

/// Where a page resumes: after the item with this sort key and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The sort key of the last item returned (a name, or a time in microseconds).
    pub key: String,
    /// The id of the last item returned.
    pub id: String,
}

/// A validated page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return.
    pub size: usize,
    /// Where to resume; `None` for the first page.
    pub after: Option<Cursor>,
}

/// Reads `page_size` (0 means 50, above 500 means 500) and decodes `page_token`.
pub fn page_request(page_size: i32, page_token: &str) -> Result<PageRequest, FieldError> {
    let size = switchboard_server_kit::page::LIST
        .size(page_size)
        .map_err(|description| FieldError::new("page_size", description))? as usize;
    let after = if page_token.is_empty() {
        None
    } else {
        Some(decode(page_token).ok_or_else(|| {
            FieldError::new("page_token", "is not a token returned by this method")
        })?)
    };
    Ok(PageRequest { size, after })
}

/// The token that resumes after `cursor`.
pub fn encode(cursor: &Cursor) -> String {
    let json = serde_json::to_vec(&(&cursor.key, &cursor.id)).expect("strings serialize");
    URL_SAFE_NO_PAD.encode(json)
}

fn decode(token: &str) -> Option<Cursor> {
    let json = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (key, id): (String, String) = serde_json::from_slice(&json).ok()?;
    Some(Cursor { key, id })
}

/// Splits `items` (fetched with one extra) into the page and the next token.
pub fn finish<T>(
    mut items: Vec<T>,
    size: usize,
    cursor_of: impl Fn(&T) -> Cursor,
) -> (Vec<T>, String) {
    if items.len() <= size {
        return (items, String::new());
    }
    items.truncate(size);
    let token = items
        .last()
        .map(|last| encode(&cursor_of(last)))
        .unwrap_or_default();
    (items, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_are_clamped() {
        assert_eq!(page_request(0, "").unwrap().size, 50);
        assert_eq!(page_request(500, "").unwrap().size, 500);
        assert_eq!(page_request(501, "").unwrap().size, 500);
        assert!(page_request(-1, "").is_err());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            key: "Ada \"quoted\"".to_owned(),
            id: "id-1".to_owned(),
        };
        let token = encode(&cursor);
        assert_eq!(page_request(10, &token).unwrap().after, Some(cursor));
        assert_eq!(page_request(10, "%%%").unwrap_err().field, "page_token");
        assert!(page_request(10, "e30").is_err());
    }

    #[test]
    fn finish_cuts_the_extra_item_into_a_token() {
        let (page, token) = finish(vec![1, 2, 3], 2, |n| Cursor {
            key: n.to_string(),
            id: n.to_string(),
        });
        assert_eq!(page, vec![1, 2]);
        assert_eq!(page_request(2, &token).unwrap().after.unwrap().key, "2");
        let (page, token) = finish(vec![1, 2], 2, |n| Cursor {
            key: n.to_string(),
            id: n.to_string(),
        });
        assert_eq!(page, vec![1, 2]);
        assert!(token.is_empty());
    }
}
