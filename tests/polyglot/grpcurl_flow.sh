#!/usr/bin/env bash
# The operator's view of a running Switchboard gateway, with grpcurl only (python3 -c reads
# JSON; jq is not needed): reflection lists the public services and no internal one, health
# is SERVING, describe works, then one web chat goes from the bot to the created-and-closed
# report, and bad input gets the documented status codes.
#
# Usage: grpcurl_flow.sh GATEWAY CREDENTIALS_JSON
#   GATEWAY           host:port of the gateway (plaintext gRPC)
#   CREDENTIALS_JSON  the dev-credentials.json written by `switchboard dev`
#
# grpcurl exits with 64 + the gRPC status code when a call fails: 67 INVALID_ARGUMENT,
# 69 NOT_FOUND, 71 PERMISSION_DENIED, 73 FAILED_PRECONDITION, 80 UNAUTHENTICATED.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 GATEWAY CREDENTIALS_JSON" >&2
    exit 2
fi
GW=$1
CREDS=$2
[[ -r $CREDS ]] || { echo "grpcurl flow: cannot read $CREDS" >&2; exit 2; }
command -v grpcurl >/dev/null || { echo "grpcurl flow: grpcurl not found on PATH" >&2; exit 2; }
command -v python3 >/dev/null || { echo "grpcurl flow: python3 not found on PATH" >&2; exit 2; }

WORK=$(mktemp -d)
STREAM_PID=""
STEP="start"
cleanup() {
    if [[ -n $STREAM_PID ]]; then
        kill "$STREAM_PID" 2>/dev/null || true
        wait "$STREAM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "grpcurl flow FAILED at step '$STEP': $*" >&2
    exit 1
}

step() {
    STEP=$1
    echo "  - $STEP"
}

# --- JSON helpers (python3 instead of jq) ----------------------------------------------

# jget PATH: prints the value at a dotted PATH (list indices are numbers) of the JSON on
# stdin; strings raw, anything else as JSON; nothing when absent (proto3 JSON omits defaults).
jget() {
    python3 -c '
import json, re, sys
def snake(name):  # grpcurl prints the proto field names (snake_case), requests may use either
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)
value = json.load(sys.stdin)
for part in sys.argv[1].split(".") if sys.argv[1] else []:
    if isinstance(value, list) and part.isdigit() and int(part) < len(value):
        value = value[int(part)]
    elif isinstance(value, dict) and (part in value or snake(part) in value):
        value = value[part] if part in value else value[snake(part)]
    else:
        sys.exit(0)
print(value if isinstance(value, str) else json.dumps(value))
' "$1"
}

cred() {
    jget "$1" <"$CREDS"
}

# user_field HANDLE FIELD: a field of the demo user with that handle.
user_field() {
    python3 -c '
import json, sys
creds = json.load(open(sys.argv[1]))
for user in creds["users"]:
    if user["handle"] == sys.argv[2]:
        print(user[sys.argv[3]])
        break
else:
    sys.exit("no demo user " + sys.argv[2])
' "$CREDS" "$1" "$2"
}

new_id() {
    python3 -c 'import uuid; print(uuid.uuid4())'
}

# --- grpcurl helpers -------------------------------------------------------------------

# call AUTH_VAR DATA METHOD: a unary call that must succeed; prints the response JSON.
# AUTH_VAR names an array of grpcurl header flags (empty for none).
call() {
    local auth_var=$1 data=$2 method=$3
    local -n auth_ref=$auth_var
    local rc=0
    grpcurl -plaintext -max-time 20 "${auth_ref[@]+"${auth_ref[@]}"}" -d "$data" "$GW" "$method" \
        >"$WORK/out" 2>"$WORK/err" || rc=$?
    if [[ $rc -ne 0 ]]; then
        fail "$method failed: grpcurl exit $rc ($(code_name $rc))
request: $data
$(cat "$WORK/err")"
    fi
    cat "$WORK/out"
}

code_name() {
    case $1 in
        0) echo OK ;;
        1) echo "grpcurl error, no gRPC status" ;;
        65) echo CANCELLED ;;
        66) echo UNKNOWN ;;
        67) echo INVALID_ARGUMENT ;;
        68) echo DEADLINE_EXCEEDED ;;
        69) echo NOT_FOUND ;;
        70) echo ALREADY_EXISTS ;;
        71) echo PERMISSION_DENIED ;;
        72) echo RESOURCE_EXHAUSTED ;;
        73) echo FAILED_PRECONDITION ;;
        74) echo ABORTED ;;
        75) echo OUT_OF_RANGE ;;
        76) echo UNIMPLEMENTED ;;
        77) echo INTERNAL ;;
        78) echo UNAVAILABLE ;;
        79) echo DATA_LOSS ;;
        80) echo UNAUTHENTICATED ;;
        *) echo "exit $1" ;;
    esac
}

# expect_code WANT_EXIT AUTH_VAR DATA METHOD: a call that must fail with that grpcurl exit
# code (64 + gRPC code).
expect_code() {
    local want=$1 auth_var=$2 data=$3 method=$4
    local -n auth_ref=$auth_var
    local rc=0
    grpcurl -plaintext -max-time 20 "${auth_ref[@]+"${auth_ref[@]}"}" -d "$data" "$GW" "$method" \
        >"$WORK/out" 2>"$WORK/err" || rc=$?
    if [[ $rc -ne $want ]]; then
        fail "$method: expected grpcurl exit $want ($(code_name "$want")), got $rc ($(code_name $rc))
request: $data
stdout: $(cat "$WORK/out")
stderr: $(cat "$WORK/err")"
    fi
}

# --- credentials -----------------------------------------------------------------------

QUEUE_ID=$(cred queue_id)
REASON_ID=$(cred wrap_up_reason_ids.0)
AGENT1_ID=$(user_field agent1 id)
AGENT1_NAME=$(user_field agent1 display_name)
AGENT2_ID=$(user_field agent2 id)
BOT_KEY=$(cred bot.api_key)
[[ -n $QUEUE_ID && -n $REASON_ID && -n $AGENT1_ID && -n $BOT_KEY ]] ||
    { echo "grpcurl flow: $CREDS lacks queue_id, wrap_up_reason_ids, agent1 or bot.api_key" >&2; exit 2; }

# The arrays below are passed to call and expect_code by name.
# shellcheck disable=SC2034
NOAUTH=()
AGENT1=(-H "authorization: Bearer $(user_field agent1 token)")
# shellcheck disable=SC2034
AGENT2=(-H "authorization: Bearer $(user_field agent2 token)")
# shellcheck disable=SC2034
SUPERVISOR=(-H "authorization: Bearer $(user_field supervisor token)")
# shellcheck disable=SC2034
BOT=(-H "x-api-key: $BOT_KEY")

# --- what an operator sees -------------------------------------------------------------

step "reflection lists the public services and no internal one"
rc=0
grpcurl -plaintext -max-time 20 "$GW" list >"$WORK/list" 2>"$WORK/err" || rc=$?
[[ $rc -eq 0 ]] || fail "grpcurl list exited $rc: $(cat "$WORK/err")"
for service in \
    switchboard.conversation.v1.ConversationService \
    switchboard.conversation.v1.SupervisorService \
    switchboard.conversation.v1.ConversationConfigService \
    switchboard.routing.v1.AgentService \
    switchboard.routing.v1.QueueService \
    switchboard.reporting.v1.ReportingService \
    switchboard.directory.v1.DirectoryService \
    grpc.health.v1.Health; do
    grep -qx "$service" "$WORK/list" || fail "service $service is not listed; got:
$(cat "$WORK/list")"
done
if grep -q '\.internal\.' "$WORK/list"; then
    fail "internal services are listed on the gateway:
$(grep '\.internal\.' "$WORK/list")"
fi

step "health check is SERVING"
health=$(call NOAUTH '{}' grpc.health.v1.Health/Check)
[[ $(jget status <<<"$health") == SERVING ]] || fail "health status is not SERVING: $health"

step "describe CreateConversation"
rc=0
grpcurl -plaintext -max-time 20 "$GW" describe \
    switchboard.conversation.v1.ConversationService.CreateConversation \
    >"$WORK/describe" 2>"$WORK/err" || rc=$?
[[ $rc -eq 0 ]] || fail "describe exited $rc: $(cat "$WORK/err")"
grep -q 'rpc CreateConversation' "$WORK/describe" ||
    fail "describe does not show the method: $(cat "$WORK/describe")"
grep -q 'CreateConversationRequest' "$WORK/describe" ||
    fail "describe does not show the request type: $(cat "$WORK/describe")"

# --- no credentials --------------------------------------------------------------------

CREATE_TEMPLATE='{
  "requestId": "%s",
  "channel": "CHANNEL_WEBCHAT",
  "queueId": "%s",
  "contact": {"displayName": "Casey Customer"},
  "channelAddress": "visitor-grpcurl-%s",
  "preChatData": [{"name": "order_number", "label": "Order number", "value": "A-1001"}],
  "botTranscript": [
    {"sender": "SENDER_KIND_CUSTOMER", "text": "I was charged twice"},
    {"sender": "SENDER_KIND_BOT", "text": "Let me get you a person."}
  ]
}'

step "a call without credentials is UNAUTHENTICATED"
# shellcheck disable=SC2059
expect_code 80 NOAUTH "$(printf "$CREATE_TEMPLATE" "$(new_id)" "$QUEUE_ID" anonymous)" \
    switchboard.conversation.v1.ConversationService/CreateConversation

step "a malformed conversation id is INVALID_ARGUMENT"
expect_code 67 AGENT1 '{"conversationId": "not-a-uuid"}' \
    switchboard.conversation.v1.ConversationService/GetConversation

# --- the flow --------------------------------------------------------------------------

step "agent1 sets presence AVAILABLE"
state=$(call AGENT1 "{\"requestId\": \"$(new_id)\", \"presence\": \"PRESENCE_AVAILABLE\"}" \
    switchboard.routing.v1.AgentService/SetPresence)
[[ $(jget agentState.presence <<<"$state") == PRESENCE_AVAILABLE ]] ||
    fail "presence is not AVAILABLE: $state"

step "agent1 streams offers"
grpcurl -plaintext -max-time 60 "${AGENT1[@]}" -d '{}' "$GW" \
    switchboard.routing.v1.AgentService/StreamOffers >"$WORK/offers" 2>"$WORK/offers.err" &
STREAM_PID=$!

step "the bot creates a web chat in the demo queue"
# shellcheck disable=SC2059
created=$(call BOT "$(printf "$CREATE_TEMPLATE" "$(new_id)" "$QUEUE_ID" "$(new_id)")" \
    switchboard.conversation.v1.ConversationService/CreateConversation)
CID=$(jget conversation.id <<<"$created")
[[ -n $CID ]] || fail "no conversation id in: $created"
[[ $(jget conversation.state <<<"$created") == STATE_OPEN ]] ||
    fail "a new conversation is not OPEN: $created"
[[ -z $(jget conversation.ownerAgentId <<<"$created") ]] ||
    fail "a new conversation already has an owner: $created"

step "wrap-up of an OPEN conversation is FAILED_PRECONDITION"
expect_code 73 AGENT1 \
    "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID\", \"wrapUpReasonIds\": [\"$REASON_ID\"]}" \
    switchboard.conversation.v1.ConversationService/SubmitWrapUp

step "the offer reaches agent1's stream"
OFFER_ID=""
for _ in $(seq 1 40); do
    OFFER_ID=$(python3 -c '
import json, sys
text = open(sys.argv[1]).read()
decoder, pos = json.JSONDecoder(), 0
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    try:
        message, pos = decoder.raw_decode(text, pos)
    except ValueError:
        break  # a message still being written
    offer = message.get("offer", {})
    # grpcurl prints proto field names (conversation_id); accept the JSON name too.
    conversation_id = offer.get("conversation_id", offer.get("conversationId"))
    if conversation_id == sys.argv[2] and offer.get("state") == "STATE_PENDING":
        print(offer["id"])
        break
' "$WORK/offers" "$CID")
    [[ -n $OFFER_ID ]] && break
    if ! kill -0 "$STREAM_PID" 2>/dev/null; then
        wait "$STREAM_PID" || true
        STREAM_PID=""
        break
    fi
    sleep 0.5
done
[[ -n $OFFER_ID ]] || fail "no pending offer for $CID on the stream within 20 s
stream output: $(cat "$WORK/offers")
stream errors: $(cat "$WORK/offers.err")"

step "the offer stream opened with agent1's state, then the end of the snapshot"
python3 -c '
import json, sys
text = open(sys.argv[1]).read()
decoder, pos, kinds = json.JSONDecoder(), 0, []
while len(kinds) < 2:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    message, pos = decoder.raw_decode(text, pos)
    kinds.extend(k for k in message if k != "heartbeat")
# grpcurl prints proto field names; accept the JSON names too.
names = {"agent_state": "agentState", "snapshot_end": "snapshotEnd"}
kinds = [names.get(k, k) for k in kinds[:2]]
if kinds != ["agentState", "snapshotEnd"]:
    sys.exit("the stream opened with %r" % kinds)
' "$WORK/offers" || fail "the offer stream did not open with the agent state and the snapshot end:
$(cat "$WORK/offers")"

step "agent1 accepts the offer"
accepted=$(call AGENT1 "{\"requestId\": \"$(new_id)\", \"offerId\": \"$OFFER_ID\"}" \
    switchboard.routing.v1.AgentService/AcceptOffer)
[[ $(jget conversationId <<<"$accepted") == "$CID" ]] ||
    fail "AcceptOffer names another conversation: $accepted"

step "the conversation is ACTIVE with agent1 as owner"
conversation=""
for _ in $(seq 1 20); do
    conversation=$(call AGENT1 "{\"conversationId\": \"$CID\"}" \
        switchboard.conversation.v1.ConversationService/GetConversation)
    [[ $(jget conversation.state <<<"$conversation") == STATE_ACTIVE ]] && break
    sleep 0.5
done
[[ $(jget conversation.state <<<"$conversation") == STATE_ACTIVE ]] ||
    fail "not ACTIVE after 10 s: $conversation"
[[ $(jget conversation.ownerAgentId <<<"$conversation") == "$AGENT1_ID" ]] ||
    fail "owner is not agent1 ($AGENT1_ID): $conversation"
[[ $(jget conversation.preChatData.0.value <<<"$conversation") == A-1001 ]] ||
    fail "agent1 does not see the pre-chat data: $conversation"
[[ -n $(jget conversation.botTranscript.1.text <<<"$conversation") ]] ||
    fail "agent1 does not see the bot transcript: $conversation"

step "the customer (through the bot) and agent1 exchange messages"
CUSTOMER_TEXT="Hello, where is my order A-1001?"
AGENT_TEXT="Hello Casey, let me check that for you."
customer_message=$(call BOT "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID\", \"text\": \"$CUSTOMER_TEXT\", \"sender\": \"SENDER_KIND_CUSTOMER\"}" \
    switchboard.conversation.v1.ConversationService/SendMessage)
[[ $(jget message.sender <<<"$customer_message") == SENDER_KIND_CUSTOMER ]] ||
    fail "the customer's message is not from CUSTOMER: $customer_message"
agent_message=$(call AGENT1 "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID\", \"text\": \"$AGENT_TEXT\"}" \
    switchboard.conversation.v1.ConversationService/SendMessage)
[[ $(jget message.sender <<<"$agent_message") == SENDER_KIND_AGENT ]] ||
    fail "agent1's message is not from AGENT: $agent_message"
[[ $(jget message.senderDisplayName <<<"$agent_message") == "$AGENT1_NAME" ]] ||
    fail "agent1's message does not carry the display name $AGENT1_NAME: $agent_message"

step "ListMessages has both messages"
messages=$(call AGENT1 "{\"conversationId\": \"$CID\", \"pageSize\": 100}" \
    switchboard.conversation.v1.ConversationService/ListMessages)
python3 -c '
import json, sys
texts = [m.get("text", "") for m in json.loads(sys.argv[1]).get("messages", [])]
missing = [t for t in sys.argv[2:] if t not in texts]
if missing:
    sys.exit("missing %r in %r" % (missing, texts))
' "$messages" "$CUSTOMER_TEXT" "$AGENT_TEXT" || fail "ListMessages lacks a message: $messages"

step "StreamConversation from the beginning replays the history, then marks the snapshot end"
rc=0
grpcurl -plaintext -max-time 3 "${AGENT1[@]}" \
    -d "{\"conversationId\": \"$CID\", \"fromBeginning\": true}" "$GW" \
    switchboard.conversation.v1.ConversationService/StreamConversation \
    >"$WORK/conversation-stream" 2>"$WORK/conversation-stream.err" || rc=$?
# The stream stays open until -max-time ends it (grpcurl exits 68, DeadlineExceeded).
[[ $rc -eq 0 || $rc -eq 68 ]] || fail "StreamConversation exited $rc: $(cat "$WORK/conversation-stream.err")"
python3 -c '
import json, sys
text = open(sys.argv[1]).read()
decoder, pos, messages = json.JSONDecoder(), 0, []
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    message, pos = decoder.raw_decode(text, pos)
    messages.append(message)
kinds = [next(k for k in m if k != "message") for m in messages if "heartbeat" not in m]
first, rest = kinds[0], kinds[1:]
end = rest.index("snapshotEnd") if "snapshotEnd" in rest else rest.index("snapshot_end")
events = [m["event"] for m in messages if "event" in m][:end]
sequences = [int(e["sequence"]) for e in events]
if first != "conversation" or sequences != list(range(1, len(sequences) + 1)) or len(sequences) < 5:
    sys.exit("opened with %r, replayed sequences %r" % (first, sequences))
' "$WORK/conversation-stream" || fail "unexpected StreamConversation output:
$(cat "$WORK/conversation-stream")"

step "a message in HTML is INVALID_ARGUMENT: messages are plain text"
expect_code 67 AGENT1 \
    "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID\", \"text\": \"<b>hi</b>\", \"format\": \"MESSAGE_FORMAT_HTML\"}" \
    switchboard.conversation.v1.ConversationService/SendMessage

step "agent1 ends the conversation: WRAP_UP"
ended=$(call AGENT1 "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID\"}" \
    switchboard.conversation.v1.ConversationService/EndConversation)
[[ $(jget conversation.state <<<"$ended") == STATE_WRAP_UP ]] || fail "not WRAP_UP: $ended"

step "agent1 submits a wrap-up reason: CLOSED"
closed=$(call AGENT1 "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID\", \"wrapUpReasonIds\": [\"$REASON_ID\"]}" \
    switchboard.conversation.v1.ConversationService/SubmitWrapUp)
[[ $(jget conversation.state <<<"$closed") == STATE_CLOSED ]] || fail "not CLOSED: $closed"
[[ -n $(jget conversation.closeTime <<<"$closed") ]] || fail "no closeTime: $closed"

step "the created-and-closed report over the whole flow counts it, even across midnight"
# One TOTAL row from an hour before the conversation was created to an hour after it
# closed, whatever day each fell on; its period starts at the range's start.
read -r RANGE_START RANGE_END < <(python3 -c '
import datetime, re, sys
def seconds(rfc3339):  # proto3 JSON: "2026-01-01T23:59:59.123456789Z"
    whole = re.sub(r"\.\d+", "", rfc3339).replace("Z", "+00:00")
    return int(datetime.datetime.fromisoformat(whole).timestamp())
def text(s):
    return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
print(text(seconds(sys.argv[1]) - 3600), text(seconds(sys.argv[2]) + 3601))
' "$(jget conversation.createTime <<<"$created")" "$(jget conversation.closeTime <<<"$closed")")
REPORT_REQUEST="{\"filter\": {\"timeRange\": {\"startTime\": \"$RANGE_START\", \"endTime\": \"$RANGE_END\"}, \"timeZone\": \"UTC\"}, \"granularity\": \"GRANULARITY_TOTAL\"}"
report=""
counted=""
for _ in $(seq 1 30); do
    report=$(call SUPERVISOR "$REPORT_REQUEST" \
        switchboard.reporting.v1.ReportingService/GetCreatedClosedReport)
    counted=$(python3 -c '
import json, sys
rows = json.loads(sys.argv[1]).get("rows", [])
# int64 fields are strings in proto3 JSON.
if any(int(r.get("created", 0)) >= 1 and int(r.get("closed", 0)) >= 1 for r in rows):
    print("yes")
' "$report")
    [[ $counted == yes ]] && break
    sleep 0.5
done
[[ $counted == yes ]] || fail "after 15 s no row with created >= 1 and closed >= 1: $report"
period_start=$(jget rows.0.period.startTime <<<"$report")
[[ $period_start == "$RANGE_START" ]] ||
    fail "a TOTAL row starts at the range start $RANGE_START, not $period_start: $report"

step "the queue-metrics report counts the queue's offer and its acceptance"
# From routing-svc's log: one offer in the demo queue, accepted within a 30 s service level.
QUEUE_REPORT_REQUEST="{\"filter\": {\"timeRange\": {\"startTime\": \"$RANGE_START\", \"endTime\": \"$RANGE_END\"}, \"timeZone\": \"UTC\", \"queueIds\": [\"$QUEUE_ID\"]}, \"granularity\": \"GRANULARITY_TOTAL\", \"serviceLevelThreshold\": \"30s\"}"
queue_report=""
answered=""
for _ in $(seq 1 30); do
    queue_report=$(call SUPERVISOR "$QUEUE_REPORT_REQUEST" \
        switchboard.reporting.v1.ReportingService/GetQueueMetricsReport)
    answered=$(python3 -c '
import json, sys
rows = json.loads(sys.argv[1]).get("rows", [])
if any(int(r.get("accepted", 0)) >= 1 and int(r.get("offered", 0)) >= 1 for r in rows):
    print("yes")
' "$queue_report")
    [[ $answered == yes ]] && break
    sleep 0.5
done
[[ $answered == yes ]] || fail "after 15 s no queue row with offered >= 1 and accepted >= 1: $queue_report"
[[ $(jget rows.0.queueId <<<"$queue_report") == "$QUEUE_ID" ]] ||
    fail "the row is not the demo queue's: $queue_report"
expect_code 67 SUPERVISOR "{\"filter\": {\"timeRange\": {\"startTime\": \"$RANGE_START\", \"endTime\": \"$RANGE_END\"}}, \"serviceLevelThreshold\": \"1.5s\"}" \
    switchboard.reporting.v1.ReportingService/GetQueueMetricsReport

step "the agent-activity report shows agent1 signed in, with capacity used"
# From routing-svc's presence and capacity events; the presence agent1 still holds
# counts up to now. Durations are strings of seconds in proto3 JSON ("12.5s").
ACTIVITY_REQUEST="{\"filter\": {\"timeRange\": {\"startTime\": \"$RANGE_START\", \"endTime\": \"$RANGE_END\"}, \"timeZone\": \"UTC\", \"agentIds\": [\"$AGENT1_ID\"]}, \"granularity\": \"GRANULARITY_TOTAL\"}"
activity=""
active=""
for _ in $(seq 1 30); do
    activity=$(call SUPERVISOR "$ACTIVITY_REQUEST" \
        switchboard.reporting.v1.ReportingService/GetAgentActivityReport)
    active=$(python3 -c '
import json, sys
agent = sys.argv[2]
rows = json.loads(sys.argv[1]).get("rows", [])
seconds = lambda d: float(d.rstrip("s")) if d else 0.0
if any(r.get("agentId") == agent and seconds(r.get("signedIn")) > 0 and r.get("occupancy", 0) > 0
       for r in rows):
    print("yes")
' "$activity" "$AGENT1_ID")
    [[ $active == yes ]] && break
    sleep 0.5
done
[[ $active == yes ]] || fail "after 15 s no activity row for agent1 with time signed in and capacity used: $activity"
# Presence is per agent, not per queue: a queue filter is refused.
expect_code 67 SUPERVISOR "{\"filter\": {\"timeRange\": {\"startTime\": \"$RANGE_START\", \"endTime\": \"$RANGE_END\"}, \"queueIds\": [\"$QUEUE_ID\"]}}" \
    switchboard.reporting.v1.ReportingService/GetAgentActivityReport

step "the per-conversation table exports as CSV: agent1's chat, resolved at first contact"
# A server stream: grpcurl prints one JSON object per message; the chunks' csvData (base64)
# concatenate to the file, and start and end carry the row count.
exported=$(call SUPERVISOR "{\"kind\": \"REPORT_KIND_CONVERSATIONS\", \"filter\": {\"timeRange\": {\"startTime\": \"$RANGE_START\", \"endTime\": \"$RANGE_END\"}, \"timeZone\": \"UTC\", \"agentIds\": [\"$AGENT1_ID\"]}}" \
    switchboard.reporting.v1.ReportingService/ExportReport)
verdict=$(python3 -c '
import base64, csv, io, json, sys
decoder, text, at, messages = json.JSONDecoder(), sys.argv[1], 0, []
while at < len(text):
    if text[at].isspace():
        at += 1
        continue
    message, at = decoder.raw_decode(text, at)
    messages.append(message)
data = "".join(base64.b64decode(m["chunk"]["csvData"]).decode() for m in messages if "chunk" in m)
rows = list(csv.reader(io.StringIO(data)))
total = int(messages[0]["start"].get("totalRows", 0))
if int(messages[-1]["end"].get("totalRows", 0)) != total or len(rows) - 1 != total:
    print("row counts disagree: %s" % messages)
elif rows[0][:2] != ["conversation_id", "channel"]:
    print("header %s" % rows[0])
elif not any(r[0] == sys.argv[2] and r[6] == sys.argv[3] and r[12] == "true" for r in rows[1:]):
    print("no row closed by agent1 at first contact for %s: %s" % (sys.argv[2], rows))
else:
    print("ok")
' "$exported" "$CID" "$AGENT1_ID")
[[ $verdict == ok ]] || fail "conversation export: $verdict"

step "stop streaming offers"
kill "$STREAM_PID" 2>/dev/null || true
wait "$STREAM_PID" 2>/dev/null || true
STREAM_PID=""

step "agent1 goes AWAY: the next chat is for the supervisor to place"
call AGENT1 "{\"requestId\": \"$(new_id)\", \"presence\": \"PRESENCE_AWAY\"}" \
    switchboard.routing.v1.AgentService/SetPresence >/dev/null

step "the supervisor assigns a new chat to agent2 (Offline), overriding presence"
# shellcheck disable=SC2059
second=$(call BOT "$(printf "$CREATE_TEMPLATE" "$(new_id)" "$QUEUE_ID" "$(new_id)")" \
    switchboard.conversation.v1.ConversationService/CreateConversation)
CID2=$(jget conversation.id <<<"$second")
[[ -n $CID2 ]] || fail "no conversation id in: $second"
expect_code 73 SUPERVISOR \
    "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID2\", \"agentId\": \"$AGENT2_ID\"}" \
    switchboard.conversation.v1.SupervisorService/AssignConversation
assigned=$(call SUPERVISOR "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID2\", \"agentId\": \"$AGENT2_ID\", \"overrideLimits\": true}" \
    switchboard.conversation.v1.SupervisorService/AssignConversation)
[[ $(jget conversation.ownerAgentId <<<"$assigned") == "$AGENT2_ID" ]] ||
    fail "not assigned to agent2: $assigned"

step "agent2 transfers it to the demo queue; the ledger shows the transfer"
transfer=$(call AGENT2 "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID2\", \"targetQueueId\": \"$QUEUE_ID\", \"note\": \"over to the team\"}" \
    switchboard.conversation.v1.ConversationService/TransferConversation)
[[ $(jget transfer.outcome <<<"$transfer") == ANSWER_OUTCOME_ACCEPTED ]] ||
    fail "a transfer to a queue is accepted at once: $transfer"
ledger=$(call SUPERVISOR "{\"conversationId\": \"$CID2\"}" \
    switchboard.conversation.v1.ConversationService/ListTransfers)
[[ $(jget transfers.0.id <<<"$ledger") == "$(jget transfer.id <<<"$transfer")" ]] ||
    fail "the ledger lacks the transfer: $ledger"

step "the supervisor force-closes it: CLOSED, and closing twice is FAILED_PRECONDITION"
forced=$(call SUPERVISOR "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID2\", \"reason\": \"duplicate\"}" \
    switchboard.conversation.v1.SupervisorService/ForceCloseConversation)
[[ $(jget conversation.state <<<"$forced") == STATE_CLOSED ]] || fail "not CLOSED: $forced"
[[ $(jget conversation.closeReason <<<"$forced") == CLOSE_REASON_FORCE_CLOSED ]] ||
    fail "not force-closed: $forced"
expect_code 73 SUPERVISOR \
    "{\"requestId\": \"$(new_id)\", \"conversationId\": \"$CID2\"}" \
    switchboard.conversation.v1.SupervisorService/ForceCloseConversation

echo "grpcurl flow: all steps passed (conversation $CID)"
