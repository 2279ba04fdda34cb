//! Cursor paging of the `*/list` results.
//!
//! The cursor is the decimal offset of the page's first item. MCP calls cursors opaque, so a
//! client never builds one; tests and the policy filter only pass along what a page returned.

use std::num::NonZeroUsize;

use rmcp::{model::PaginatedRequestParams, ErrorData};

/// One page of a list and the cursor of the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page, in list order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when this page ends the list.
    pub next_cursor: Option<String>,
}

/// The page of `items` that `request`'s cursor asks for, at most `page_size` long.
///
/// Without a page size the whole list is one page. A cursor that is not an offset inside the
/// list is the client's error (JSON-RPC -32602), as MCP asks of servers for invalid cursors.
pub fn page_of<T>(
    items: Vec<T>,
    request: Option<&PaginatedRequestParams>,
    page_size: Option<NonZeroUsize>,
) -> Result<Page<T>, ErrorData> {
    let cursor = request.and_then(|params| params.cursor.as_deref());
    let start = start_offset(cursor, items.len())?;
    let end = page_size.map_or(items.len(), |size| {
        start.saturating_add(size.get()).min(items.len())
    });
    let next_cursor = (end < items.len()).then(|| end.to_string());
    let items = items.into_iter().skip(start).take(end - start).collect();
    Ok(Page { items, next_cursor })
}

fn start_offset(cursor: Option<&str>, len: usize) -> Result<usize, ErrorData> {
    let Some(cursor) = cursor else {
        return Ok(0);
    };
    match cursor.parse::<usize>() {
        Ok(offset) if offset <= len => Ok(offset),
        _ => Err(ErrorData::invalid_params(
            format!("invalid cursor `{cursor}`"),
            None,
        )),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn at(cursor: &str) -> PaginatedRequestParams {
        PaginatedRequestParams::default().with_cursor(Some(cursor.to_owned()))
    }

    #[test]
    fn pages_follow_their_cursors_to_the_end() {
        let size = NonZeroUsize::new(2);
        let first = page_of(vec![1, 2, 3, 4, 5], None, size).unwrap();
        assert_eq!(first.items, [1, 2]);
        assert_eq!(first.next_cursor.as_deref(), Some("2"));
        let last = page_of(vec![1, 2, 3, 4, 5], Some(&at("4")), size).unwrap();
        assert_eq!(
            last,
            Page {
                items: vec![5],
                next_cursor: None
            }
        );
    }

    #[test]
    fn without_a_page_size_everything_is_one_page() {
        let page = page_of(vec!["a", "b", "c"], None, None).unwrap();
        assert_eq!(page.items, ["a", "b", "c"]);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn an_exact_fit_has_no_next_page() {
        let page = page_of(vec![1, 2], None, NonZeroUsize::new(2)).unwrap();
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn cursors_outside_the_list_are_invalid_params() {
        for cursor in ["6", "-1", "abc", ""] {
            let error = page_of(vec![1, 2, 3, 4, 5], Some(&at(cursor)), NonZeroUsize::new(2))
                .expect_err(cursor);
            assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        }
    }
}
