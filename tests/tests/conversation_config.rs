//! Status labels and canned responses through the gateway with the demo credentials:
//! administrators define labels, anyone who sees a conversation sets one, supervisors
//! count open conversations by label; supervisors keep the tenant's phrases and agents
//! find them by keyword prefix. Another tenant's ids are NOT_FOUND, retries change nothing
//! twice and card numbers are masked.

use std::time::Duration;

use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::conversation::v1::conversation_config_service_client::ConversationConfigServiceClient;
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::conversation::v1::supervisor_service_client::SupervisorServiceClient;
use switchboard_proto::reporting::v1 as rep;
use switchboard_tests::{Backend, Harness, eventually, rid};
use tonic::Code;
use tonic::service::Interceptor;
use tonic::transport::Channel as Transport;

switchboard_tests::on_each_backend!(
    status_labels_are_set_counted_and_cleared_on_deletion,
    canned_responses_are_kept_by_supervisors_and_found_by_prefix
);

fn config<I: Interceptor>(
    h: &Harness,
    credentials: I,
) -> ConversationConfigServiceClient<tonic::service::interceptor::InterceptedService<Transport, I>>
{
    ConversationConfigServiceClient::with_interceptor(h.channel.clone(), credentials)
}

fn label_request(request_id: &str, name: &str) -> conv::CreateStatusLabelRequest {
    conv::CreateStatusLabelRequest {
        request_id: request_id.to_owned(),
        status_label: Some(conv::StatusLabel {
            display_name: name.to_owned(),
            ..Default::default()
        }),
    }
}

async fn create_label(h: &Harness, name: &str) -> conv::StatusLabel {
    config(h, h.bearer("admin"))
        .create_status_label(label_request(&rid(), name))
        .await
        .expect("administrator creates a label")
        .into_inner()
        .status_label
        .expect("label")
}

async fn open_conversation(h: &Harness, address: &str) -> conv::Conversation {
    h.bot_conversations()
        .create_conversation(conv::CreateConversationRequest {
            request_id: rid(),
            channel: Channel::Webchat as i32,
            queue_id: h.creds.queue_id.clone(),
            contact: Some(conv::Contact {
                display_name: Some("Casey Customer".into()),
                ..Default::default()
            }),
            channel_address: address.into(),
            ..Default::default()
        })
        .await
        .expect("bot creates a conversation")
        .into_inner()
        .conversation
        .expect("conversation")
}

async fn set_status(
    h: &Harness,
    who: &str,
    conversation_id: &str,
    label_id: &str,
) -> Result<conv::Conversation, tonic::Status> {
    h.conversations(who)
        .set_conversation_status(conv::SetConversationStatusRequest {
            request_id: rid(),
            conversation_id: conversation_id.to_owned(),
            status_label_id: label_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner().conversation.expect("conversation"))
}

/// The counts as (label name, open conversations), the row for none last with "".
async fn counts(h: &Harness, queue_id: &str) -> Vec<(String, i64)> {
    SupervisorServiceClient::with_interceptor(h.channel.clone(), h.bearer("supervisor"))
        .count_conversations_by_status(conv::CountConversationsByStatusRequest {
            queue_id: queue_id.to_owned(),
        })
        .await
        .expect("supervisor counts by status")
        .into_inner()
        .counts
        .into_iter()
        .map(|c| (c.display_name, c.open_conversations))
        .collect()
}

/// reporting-svc's open conversations of the demo tenant per queue and label, whenever
/// created, as the supervisor asks.
async fn open_report(h: &Harness) -> Vec<rep::OpenConversationsRow> {
    h.reports("supervisor")
        .get_open_conversations_report(rep::GetOpenConversationsReportRequest {
            filter: Some(rep::ReportFilter::default()),
            ..Default::default()
        })
        .await
        .expect("the open-conversations report")
        .into_inner()
        .rows
}

async fn events(h: &Harness, conversation_id: &str) -> Vec<conv::ConversationEvent> {
    h.conversations("supervisor")
        .list_conversation_events(conv::ListConversationEventsRequest {
            conversation_id: conversation_id.to_owned(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("events")
        .into_inner()
        .events
}

async fn status_labels_are_set_counted_and_cleared_on_deletion(backend: &Backend) {
    let h = Harness::start(backend).await.expect("suite starts");
    let admin = h.creds.user("admin").id.clone();
    let agent1 = h.creds.user("agent1").id.clone();

    // Administrators define labels; names are unique whatever their case.
    let refund = create_label(&h, "Awaiting refund").await;
    let escalated = create_label(&h, "Escalated").await;
    let err = config(&h, h.bearer("agent1"))
        .create_status_label(label_request(&rid(), "Agent's own"))
        .await
        .expect_err("an agent cannot create a label");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = config(&h, h.bearer("admin"))
        .create_status_label(label_request(&rid(), "awaiting REFUND"))
        .await
        .expect_err("a taken name");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // A retried create answers the same label and creates nothing twice.
    let retried = rid();
    let mut admin_config = config(&h, h.bearer("admin"));
    let first = admin_config
        .create_status_label(label_request(&retried, "Callback"))
        .await
        .expect("create")
        .into_inner();
    let again = admin_config
        .create_status_label(label_request(&retried, "Callback"))
        .await
        .expect("the retry is answered")
        .into_inner();
    assert_eq!(first, again);
    let err = admin_config
        .create_status_label(label_request(&retried, "Another name"))
        .await
        .expect_err("the same request_id for another request");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Anyone lists them, by name, page by page.
    let mut agent_config = config(&h, h.bearer("agent1"));
    let page = agent_config
        .list_status_labels(conv::ListStatusLabelsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("an agent lists labels")
        .into_inner();
    let rest = agent_config
        .list_status_labels(conv::ListStatusLabelsRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
        })
        .await
        .expect("next page")
        .into_inner();
    let names: Vec<String> = page
        .status_labels
        .iter()
        .chain(&rest.status_labels)
        .map(|l| l.display_name.clone())
        .collect();
    assert_eq!(names, ["Awaiting refund", "Callback", "Escalated"]);
    assert!(rest.next_page_token.is_empty());

    // Renaming is for administrators.
    let rename = |id: &str, name: &str| conv::UpdateStatusLabelRequest {
        request_id: rid(),
        status_label: Some(conv::StatusLabel {
            id: id.to_owned(),
            display_name: name.to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    let err = config(&h, h.bearer("supervisor"))
        .update_status_label(rename(&escalated.id, "Escalated to billing"))
        .await
        .expect_err("a supervisor cannot rename a label");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let escalated = admin_config
        .update_status_label(rename(&escalated.id, "Escalated to billing"))
        .await
        .expect("rename")
        .into_inner()
        .status_label
        .expect("label");
    assert_eq!(escalated.display_name, "Escalated to billing");

    // Conversations waiting in the queue (no agent is available) get labels.
    let before = counts(&h, "").await;
    let unlabelled_before = before.last().expect("the row for none").1;
    let a = open_conversation(&h, "visitor-a").await;
    let b = open_conversation(&h, "visitor-b").await;
    let c = open_conversation(&h, "visitor-c").await;
    let labelled = set_status(&h, "supervisor", &a.id, &refund.id)
        .await
        .expect("a supervisor sets a status");
    assert_eq!(labelled.status_label_id, refund.id);
    set_status(&h, "supervisor", &b.id, &escalated.id)
        .await
        .expect("set");
    set_status(&h, "agent1", &c.id, &refund.id)
        .await
        .expect("an agent sets the status of a conversation it sees");
    let changed = events(&h, &c.id).await.pop().expect("an event");
    assert_eq!(changed.event_type, conv::EventType::StatusChanged as i32);
    assert_eq!(changed.status_label_id, refund.id);
    assert_eq!(changed.actor_id, agent1, "the event says who set it");
    let unknown = set_status(&h, "agent1", &c.id, &uuid::Uuid::new_v4().to_string())
        .await
        .expect_err("an unknown label");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let expected = vec![
        ("Awaiting refund".to_owned(), 2),
        ("Escalated to billing".to_owned(), 1),
        (String::new(), unlabelled_before),
    ];
    assert_eq!(counts(&h, "").await, expected);
    assert_eq!(counts(&h, &h.creds.queue_id).await, expected, "by queue");
    // reporting-svc's open-conversations report agrees, from the event log.
    let labelled = |rows: Vec<rep::OpenConversationsRow>| {
        rows.into_iter()
            .filter(|r| r.queue_id == h.creds.queue_id && !r.status_label_id.is_empty())
            .map(|r| (r.status_label_id, r.open))
            .collect::<Vec<_>>()
    };
    let mut want = vec![(refund.id.clone(), 2), (escalated.id.clone(), 1)];
    want.sort();
    eventually(
        "the open-conversations report to show the labels",
        Duration::from_secs(15),
        || {
            let (h, want, labelled) = (&h, want.clone(), &labelled);
            async move {
                let rows = open_report(h).await;
                (labelled(rows) == want).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        counts(&h, &uuid::Uuid::new_v4().to_string()).await,
        [(String::new(), 0)],
        "another queue has none"
    );
    let err = SupervisorServiceClient::with_interceptor(h.channel.clone(), h.bearer("agent1"))
        .count_conversations_by_status(conv::CountConversationsByStatusRequest::default())
        .await
        .expect_err("agents do not count");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Another tenant: the demo tenant's labels are NOT_FOUND there and change nothing, and
    // its labels are NOT_FOUND here.
    let (_, other_admin) = h
        .new_tenant_with_administrator("Globex", "Grace Admin", "grace@globex.test")
        .await;
    let mut theirs = config(&h, other_admin.clone());
    let listed = theirs
        .list_status_labels(conv::ListStatusLabelsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.status_labels.is_empty(), "{listed:?}");
    let err = theirs
        .update_status_label(rename(&refund.id, "Mine now"))
        .await
        .expect_err("another tenant's label");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = theirs
        .delete_status_label(conv::DeleteStatusLabelRequest {
            request_id: rid(),
            status_label_id: refund.id.clone(),
        })
        .await
        .expect_err("another tenant's label");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let their_label = theirs
        .create_status_label(label_request(&rid(), "Awaiting refund"))
        .await
        .expect("the same name in another tenant")
        .into_inner()
        .status_label
        .expect("label");
    let err = set_status(&h, "supervisor", &b.id, &their_label.id)
        .await
        .expect_err("another tenant's label");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = ConversationServiceClient::with_interceptor(h.channel.clone(), other_admin)
        .set_conversation_status(conv::SetConversationStatusRequest {
            request_id: rid(),
            conversation_id: a.id.clone(),
            status_label_id: their_label.id.clone(),
        })
        .await
        .expect_err("another tenant's conversation");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(counts(&h, "").await, expected, "nothing changed");

    // Deleting a label clears it from its conversations, each with an event; a retry
    // answers the same and clears nothing twice.
    let delete = conv::DeleteStatusLabelRequest {
        request_id: rid(),
        status_label_id: refund.id.clone(),
    };
    admin_config
        .delete_status_label(delete.clone())
        .await
        .expect("delete");
    let events_after = events(&h, &a.id).await;
    admin_config
        .delete_status_label(delete)
        .await
        .expect("the retry is answered");
    assert_eq!(events(&h, &a.id).await, events_after);
    for conversation in [&a, &c] {
        let cleared = events(&h, &conversation.id).await.pop().expect("an event");
        assert_eq!(cleared.event_type, conv::EventType::StatusChanged as i32);
        assert_eq!(cleared.status_label_id, "");
        assert_eq!(cleared.actor_id, admin);
    }
    assert_eq!(
        counts(&h, "").await,
        [
            ("Escalated to billing".to_owned(), 1),
            (String::new(), unlabelled_before + 2)
        ]
    );
    let err = admin_config
        .delete_status_label(conv::DeleteStatusLabelRequest {
            request_id: rid(),
            status_label_id: refund.id.clone(),
        })
        .await
        .expect_err("already deleted");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = set_status(&h, "supervisor", &a.id, &refund.id)
        .await
        .expect_err("a deleted label");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Clearing a status is setting none.
    let cleared = set_status(&h, "supervisor", &b.id, "")
        .await
        .expect("clear");
    assert_eq!(cleared.status_label_id, "");

    h.stop().await.expect("every service stops cleanly");
}

fn phrase_request(
    request_id: &str,
    keyword: &str,
    text: &str,
) -> conv::CreateCannedResponseRequest {
    conv::CreateCannedResponseRequest {
        request_id: request_id.to_owned(),
        canned_response: Some(conv::CannedResponse {
            keyword: keyword.to_owned(),
            text: text.to_owned(),
            ..Default::default()
        }),
    }
}

/// Every match of `prefix`, page by page, as the agent sees them.
async fn search_all(h: &Harness, prefix: &str, page_size: i32) -> Vec<conv::CannedResponse> {
    let mut client = h.conversations("agent1");
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .search_canned_responses(conv::SearchCannedResponsesRequest {
                keyword_prefix: prefix.to_owned(),
                page_size,
                page_token,
            })
            .await
            .expect("an agent searches")
            .into_inner();
        assert!(page.canned_responses.len() <= page_size as usize);
        found.extend(page.canned_responses);
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

async fn canned_responses_are_kept_by_supervisors_and_found_by_prefix(backend: &Backend) {
    let h = Harness::start(backend).await.expect("suite starts");
    let mut supervisor = config(&h, h.bearer("supervisor"));

    // A few hundred phrases over a few keyword stems, created out of order.
    let stems = ["ref", "Refund", "return", "re", "ship"];
    let mut keywords = Vec::new();
    for i in 0..250 {
        let keyword = format!("{}{:03}", stems[i % stems.len()], (i * 7919) % 1000);
        supervisor
            .create_canned_response(phrase_request(
                &rid(),
                &keyword,
                &format!("Phrase {keyword}"),
            ))
            .await
            .expect("a supervisor creates a phrase");
        keywords.push(keyword);
    }

    for (prefix, page_size) in [
        ("re", 40),
        ("REF", 7),
        ("refund1", 3),
        ("s", 500),
        ("x", 10),
    ] {
        let found: Vec<String> = search_all(&h, prefix, page_size)
            .await
            .into_iter()
            .map(|p| p.keyword)
            .collect();
        let mut expected: Vec<String> = keywords
            .iter()
            .filter(|k| k.to_lowercase().starts_with(&prefix.to_lowercase()))
            .cloned()
            .collect();
        expected.sort_by_key(|k| k.to_lowercase());
        assert_eq!(found, expected, "prefix {prefix:?}, pages of {page_size}");
    }
    // An empty prefix finds all; a page size above the maximum is clamped to 500.
    let all = h
        .conversations("agent1")
        .search_canned_responses(conv::SearchCannedResponsesRequest {
            page_size: 100_000,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!(all.canned_responses.len(), keywords.len());
    assert!(all.next_page_token.is_empty());

    // Agents do not keep phrases; keywords are unique whatever their case, and one word.
    let err = config(&h, h.bearer("agent1"))
        .create_canned_response(phrase_request(&rid(), "mine", "My phrase"))
        .await
        .expect_err("an agent cannot create a phrase");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = supervisor
        .create_canned_response(phrase_request(&rid(), &keywords[1].to_uppercase(), "Again"))
        .await
        .expect_err("a taken keyword");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    for (keyword, text) in [("two words", "Text"), ("ok", "bell\u{7}")] {
        let err = supervisor
            .create_canned_response(phrase_request(&rid(), keyword, text))
            .await
            .expect_err("refused text");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }

    // Card numbers are masked before the phrase is stored, whatever separates the groups.
    let retried = rid();
    let text = "Card 4111.1111.1111.1111 or 5500\t0000\t0000\t0004 on file";
    let created = supervisor
        .create_canned_response(phrase_request(&retried, "cardonfile", text))
        .await
        .expect("create")
        .into_inner()
        .canned_response
        .expect("phrase");
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    assert!(
        !digits(&created.text).contains("4111111111111111")
            && !digits(&created.text).contains("5500000000000004"),
        "{}",
        created.text
    );
    assert!(created.text.contains('*'), "{}", created.text);
    let stored = search_all(&h, "cardonfile", 10).await;
    assert_eq!(stored, std::slice::from_ref(&created));
    // A retry answers the same phrase and creates nothing twice.
    let again = supervisor
        .create_canned_response(phrase_request(&retried, "cardonfile", text))
        .await
        .expect("the retry is answered")
        .into_inner()
        .canned_response
        .expect("phrase");
    assert_eq!(again, created);
    assert_eq!(search_all(&h, "", 500).await.len(), keywords.len() + 1);

    // Administrators and supervisors change and delete them.
    let update =
        |id: &str, keyword: &str, text: &str, paths: &[&str]| conv::UpdateCannedResponseRequest {
            request_id: rid(),
            canned_response: Some(conv::CannedResponse {
                id: id.to_owned(),
                keyword: keyword.to_owned(),
                text: text.to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        };
    let changed = config(&h, h.bearer("admin"))
        .update_canned_response(update(&created.id, "", "Card ending 1111", &["text"]))
        .await
        .expect("an administrator changes the text")
        .into_inner()
        .canned_response
        .expect("phrase");
    assert_eq!(changed.keyword, "cardonfile");
    assert_eq!(changed.text, "Card ending 1111");
    let err = supervisor
        .update_canned_response(update(&created.id, &keywords[0], "", &["keyword"]))
        .await
        .expect_err("a taken keyword");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // Another tenant neither finds nor touches them.
    let (_, other_admin) = h
        .new_tenant_with_administrator("Globex", "Grace Admin", "grace@globex.test")
        .await;
    let mut theirs = config(&h, other_admin.clone());
    let err = theirs
        .update_canned_response(update(&created.id, "", "Mine", &["text"]))
        .await
        .expect_err("another tenant's phrase");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = theirs
        .delete_canned_response(conv::DeleteCannedResponseRequest {
            request_id: rid(),
            canned_response_id: created.id.clone(),
        })
        .await
        .expect_err("another tenant's phrase");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let found = ConversationServiceClient::with_interceptor(h.channel.clone(), other_admin)
        .search_canned_responses(conv::SearchCannedResponsesRequest::default())
        .await
        .expect("search")
        .into_inner();
    assert!(found.canned_responses.is_empty(), "{found:?}");
    assert_eq!(search_all(&h, "cardonfile", 10).await, [changed]);

    supervisor
        .delete_canned_response(conv::DeleteCannedResponseRequest {
            request_id: rid(),
            canned_response_id: created.id.clone(),
        })
        .await
        .expect("a supervisor deletes a phrase");
    assert!(search_all(&h, "cardonfile", 10).await.is_empty());
    let err = supervisor
        .delete_canned_response(conv::DeleteCannedResponseRequest {
            request_id: rid(),
            canned_response_id: created.id.clone(),
        })
        .await
        .expect_err("already deleted");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    h.stop().await.expect("every service stops cleanly");
}
