#!/usr/bin/env bash
# An exchange through two exchnode nodes with curl alone: send, receive with ack, status, and
# publish a catalog entry. Every call is what a Java or .NET system does with its HTTP client.
#
#   SENDER_URL=http://127.0.0.1:7480  SENDER_TOKEN_FILE=/srv/gongan/operator.token \
#   RECEIVER_URL=http://127.0.0.1:7481 RECEIVER_TOKEN_FILE=/srv/520102/operator.token \
#   TO=520102 OPERATOR=张三 CODE=101001/000001 examples/curl/exchange.sh
#
# SENDER_* is the node of the sending department, RECEIVER_* the node whose name is TO (in a
# real deployment each system holds only its own node's operator token). Needs bash and curl.
set -euo pipefail

: "${SENDER_URL:?the operator API of the sending node, e.g. http://127.0.0.1:7480}"
: "${SENDER_TOKEN_FILE:?its operator.token}"
: "${RECEIVER_URL:?the operator API of the receiving node}"
: "${RECEIVER_TOKEN_FILE:?its operator.token}"
: "${TO:?the name of the receiving node, e.g. 520102}"
OPERATOR="${OPERATOR:-$(id -un)}"
CODE="${CODE:-101001/000001}"
TEXT="${TEXT:-hello from curl at $(date -u +%Y-%m-%dT%H:%M:%SZ)}"

sender_auth="Authorization: Bearer $(cat "$SENDER_TOKEN_FILE")"
receiver_auth="Authorization: Bearer $(cat "$RECEIVER_TOKEN_FILE")"
# --fail-with-body: a refusal exits non-zero and still prints {"error": ..., "code": ...}
call=(curl --silent --show-error --fail-with-body --max-time 60)

# 1. Send. The body is the payload, as is; the answer comes once the node holds it durably.
#    receipt=1 asks the recipient for a signed receipt. Idempotency-Key: a retry with the same
#    key (after a timeout, say) answers the first message again and sends nothing new.
sent=$(printf '%s' "$TEXT" | "${call[@]}" -X POST -H "$sender_auth" \
    -H "Content-Type: application/octet-stream" -H "Idempotency-Key: curl-example-$$-$RANDOM" \
    --data-binary @- "$SENDER_URL/v1/send?to=$TO&content_type=text/plain&receipt=1")
echo "send: $sent"
message_id=$(printf '%s' "$sent" | sed -n 's/.*"message_id": *"\([0-9a-f]*\)".*/\1/p')

# 2. Receive with ack, on the recipient's node: a long poll (up to 30 s) leases what is waiting;
#    store each delivery first, then acknowledge it. Unacknowledged, it is offered again later.
received=$("${call[@]}" -H "$receiver_auth" "$RECEIVER_URL/v1/receive?max=10&wait=30")
echo "receive: $received"
ids=$(printf '%s' "$received" | grep -o '"id": *"[^"]*"' | sed 's/"id": *//' | paste -sd, -)
if [ -n "$ids" ]; then
    printf '%s' "$received" | grep -o '"payload": *"[^"]*"' | sed 's/"payload": *"\(.*\)"/\1/' \
        | while read -r payload; do echo "payload: $(printf '%s' "$payload" | base64 -d)"; done
    acked=$("${call[@]}" -X POST -H "$receiver_auth" -H "Content-Type: application/json" \
        --data "{\"ids\": [$ids]}" "$RECEIVER_URL/v1/ack")
    echo "ack: $acked"
fi

# 3. Status, on the sender's node: waits (up to 30 s) for the recipient's receipt.
status=$("${call[@]}" -H "$sender_auth" "$SENDER_URL/v1/status/$message_id?wait=30&recipient=$TO")
echo "status: $status"

# 4. Publish a catalog entry of the sending department (signed by its node; the operator named
#    is on the audit record). Every field is in node/README.md §6 and in /v1/openapi.json.
published=$("${call[@]}" -X POST -H "$sender_auth" -H "Content-Type: application/json" \
    --data-binary @- "$SENDER_URL/v1/catalog/publish" <<JSON
{"operator": "$OPERATOR",
 "entry": {"code": "$CODE", "name": "人口基本信息", "provider_code": "11520102MB1234567X",
           "summary": "户籍人口的基本信息", "format": "database",
           "data_items": [{"name": "身份证号", "type": "C", "description": "公民身份号码"},
                          {"name": "姓名", "type": "C"}],
           "share_type": "conditional", "share_conditions": "仅限政务部门依法履职使用",
           "share_methods": ["subscription_push"], "update_cycle": "daily",
           "publish_date": "2026-01-05"}}
JSON
)
echo "publish: $published"
