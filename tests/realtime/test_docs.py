"""docs/asyncapi.yaml and docs/realtime.md against the code that defines the
protocol: every event type, client action, server message, error code and
close code the code has must be documented, and what the code really sends
must match the documented schemas. A new one fails here until it is.

What the consumer accepts and sends is read from realtime/consumers.py's
syntax tree, so nothing here has to be kept in step by hand.
"""

import ast
import inspect
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from core import services as core_services
from notify import inbox
from notify import services as notify_services
from notify.models import InboxMessage, Notification, NotificationStatus
from orders import services as order_services
from realtime import consumers, fanout, relay, services
from realtime.events import EVENT_TYPES
from realtime.models import Event
from realtime.routing import websocket_app
from tests.factories import PASSWORD, CustomerFactory, OrderFactory, StaffFactory, UserFactory
from tests.helpers import relayed

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPEC_URI = "urn:hub:docs:asyncapi"


# ---- what the code defines -----------------------------------------------------------------


def _consumer_calls(method):
    """The first string argument of every `self.<method>(...)` call in the consumer."""
    found = set()
    for node in ast.walk(ast.parse(inspect.getsource(consumers))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def _client_actions():
    """Every `action == "..."` the consumer compares against."""
    found = set()
    for node in ast.walk(ast.parse(inspect.getsource(consumers))):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "action":
            found |= {c.value for c in node.comparators if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return found


def _server_control_types():
    """The `type` of every message the consumer, or the fan-out for every socket (the
    heartbeat), builds itself (events come from the log). Dotted types (`gap.expired`) are
    channel-layer messages to the consumer, not to the socket."""
    found = set()
    trees = [ast.parse(inspect.getsource(module)) for module in (consumers, fanout)]
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "type" and isinstance(value, ast.Constant):
                    found.add(value.value)
    return {name for name in found if "." not in name}


CLIENT_ACTIONS = sorted(_client_actions())
CONTROL_TYPES = sorted(_server_control_types())
ERROR_CODES = sorted(_consumer_calls("_error"))
RESYNC_REASONS = sorted(_consumer_calls("_resync"))
CLOSE_CODES = {name: value for name, value in vars(consumers).items() if name.startswith("CLOSE_")}


def test_code_scan_finds_the_protocol():
    # A floor, so that a change to the consumer's shape that blinds the scan
    # fails here instead of letting every test below pass on empty sets.
    assert set(CLIENT_ACTIONS) >= {"ping", "subscribe", "resume"}
    assert set(CONTROL_TYPES) >= {"pong", "subscribed", "heartbeat", "error", "resync_required"}
    assert set(ERROR_CODES) >= {"bad_message", "unknown_action", "bad_subscription", "bad_last_event_id"}
    assert "rate_limited" in ERROR_CODES
    assert RESYNC_REASONS == ["the event log no longer has what followed last_event_id"]
    assert set(CLOSE_CODES.values()) >= {4429}
    assert not set(CONTROL_TYPES) & set(EVENT_TYPES)


# ---- the AsyncAPI document -------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec():
    with open(DOCS / "asyncapi.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def markdown():
    return (DOCS / "realtime.md").read_text(encoding="utf-8")


def _ref_parts(ref):
    return [part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/")]


def _deref(spec, node):
    """Follow local $refs until a node that is not one."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are expected: {ref}"
        node = spec
        for part in _ref_parts(ref):
            node = node[part]
    return node


def _discriminator(spec, message):
    """('type', value) or ('action', value): what tells this message apart on the wire."""
    payload = _deref(spec, message["payload"])
    for key in ("type", "action"):
        prop = _deref(spec, payload.get("properties", {}).get(key, {}))
        if "const" in prop:
            return key, prop["const"]
    raise AssertionError(f"message {message.get('name')!r}: its payload has no const `type` or `action`")


def _messages(spec):
    """{('type' | 'action', value): message key in components.messages}."""
    found = {}
    for key, message in spec["components"]["messages"].items():
        discriminator = _discriminator(spec, message)
        assert discriminator not in found, f"{discriminator} declared twice: {found[discriminator]}, {key}"
        found[discriminator] = key
    return found


def _operation_messages(spec, action):
    """Keys of the messages that the operations with this action (send/receive) name."""
    keys = set()
    for operation in spec["operations"].values():
        if operation["action"] == action:
            for ref in operation["messages"]:
                keys.add(_deref(spec, ref)["name"])
    return {k for k, m in spec["components"]["messages"].items() if m["name"] in keys}


def _validator(spec, pointer):
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT7))
    return Draft7Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER
    )


def _assert_valid(spec, discriminator, payload):
    key = _messages(spec)[discriminator]
    errors = sorted(_validator(spec, f"/components/messages/{key}/payload").iter_errors(payload), key=str)
    assert not errors, f"{discriminator} does not match docs/asyncapi.yaml: " + "; ".join(e.message for e in errors)


def test_asyncapi_is_an_asyncapi_3_document_for_the_events_socket(spec):
    assert str(spec["asyncapi"]).startswith("3.0")
    assert spec["servers"]["local"]["host"] == "127.0.0.1:8000"
    assert spec["servers"]["local"]["protocol"] == "ws"
    (channel,) = spec["channels"].values()
    assert channel["address"] == "/ws/events/"
    schemes = spec["components"]["securitySchemes"]
    placed = {(s["type"], s["in"], s["name"]) for s in schemes.values()}
    assert placed == {
        ("httpApiKey", "header", "Authorization"),
        ("httpApiKey", "query", "ticket"),
        ("httpApiKey", "cookie", "sessionid"),
    }
    for operation in spec["operations"].values():
        for ref in operation["messages"]:
            assert ref["$ref"].startswith("#/channels/"), "AsyncAPI 3 operations name their channel's messages"
            _deref(spec, ref)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_asyncapi_declares_every_event_type(spec, event_type):
    key = _messages(spec).get(("type", event_type))
    assert key, f"docs/asyncapi.yaml has no message whose payload's type is const {event_type!r}"
    assert key in _operation_messages(spec, "receive")
    assert spec["components"]["messages"][key]["name"] == event_type


@pytest.mark.parametrize("action", CLIENT_ACTIONS)
def test_asyncapi_declares_every_client_action(spec, action):
    key = _messages(spec).get(("action", action))
    assert key, f"docs/asyncapi.yaml has no message whose payload's action is const {action!r}"
    assert key in _operation_messages(spec, "send")


@pytest.mark.parametrize("message_type", CONTROL_TYPES)
def test_asyncapi_declares_every_server_control_message(spec, message_type):
    key = _messages(spec).get(("type", message_type))
    assert key, f"docs/asyncapi.yaml has no message whose payload's type is const {message_type!r}"
    assert key in _operation_messages(spec, "receive")


def test_asyncapi_declares_nothing_the_code_does_not_have(spec):
    documented = _messages(spec)
    assert {v for k, v in documented if k == "type"} <= set(EVENT_TYPES) | set(CONTROL_TYPES)
    assert {v for k, v in documented if k == "action"} <= set(CLIENT_ACTIONS)


def test_asyncapi_lists_of_values_match_the_code(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["EventType"]["enum"] == EVENT_TYPES
    assert sorted(schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"]) == ERROR_CODES
    reasons = schemas["ResyncRequired"]["properties"]["data"]["properties"]["reason"]["enum"]
    assert sorted(reasons) == RESYNC_REASONS


def test_asyncapi_examples_match_their_schemas(spec):
    for key, message in spec["components"]["messages"].items():
        assert message.get("examples"), f"message {key} has no example"
        for example in message["examples"]:
            _assert_valid(spec, _discriminator(spec, message), example["payload"])


# ---- what the code really sends ----------------------------------------------------------------


def _recorded_envelopes():
    """Drive every kind of change through the real services; the log's envelopes, as on the wire."""
    user, staff = UserFactory(), StaffFactory()
    order = OrderFactory(created_by=user)  # order.created, notification.created
    order_services.order_change_status(order=order, status="confirmed", by=staff)
    order_services.order_update(order=order, by=staff, status="shipped", tracking_number="TRK123456789", notes="x")
    order_services.order_update(order=order, by=staff, total_amount=Decimal("10.50"))
    order_services.customer_update(customer=order.customer, by=user, phone="+14155550199", city="Pune")
    order_services.customer_update(customer=CustomerFactory(created_by=user), by=user, name="Renamed")
    order_services.order_delete(order=OrderFactory(created_by=user), by=staff)
    notify_services.notification_send(
        sender=user, title="Hello", message="Hi", channel="email", recipient="someone@example.com"
    )
    pending = Notification.objects.filter(status=NotificationStatus.PENDING)
    notify_services.notifications_deliver(notification_ids=list(pending.values_list("pk", flat=True)))
    failed = Notification.objects.filter(status=NotificationStatus.SENT).first()
    Notification.objects.filter(pk=failed.pk).update(status=NotificationStatus.FAILED)
    notify_services.notification_retry(notification=failed, by=staff)
    # The order's in_app rows reached the user's inbox: inbox.message_created, inbox.counts_changed.
    inbox.inbox_message_change(message=InboxMessage.objects.filter(user=user).first(), change="read")
    inbox.inbox_mark_all(user=user, state="read")  # inbox.counts_changed, `marked_all` given
    relayed()
    return [json.loads(json.dumps(event.envelope())) for event in Event.objects.order_by("id")]


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_recorded_events_match_their_schema(spec, event_type):
    envelopes = [e for e in _recorded_envelopes() if e["type"] == event_type]
    assert envelopes, f"no {event_type} recorded: teach _recorded_envelopes() to make one"
    for envelope in envelopes:
        _assert_valid(spec, ("type", event_type), envelope)


async def _control_messages():
    """Talk to a real consumer and return what it answers."""
    user = await database_sync_to_async(UserFactory)()
    _, key = await database_sync_to_async(core_services.auth_token_create)(username=user.username, password=PASSWORD)
    socket = WebsocketCommunicator(websocket_app, "/ws/events/", headers=[(b"authorization", f"Token {key}".encode())])
    connected, _ = await socket.connect(timeout=3)
    assert connected
    sent = [
        {"action": "ping"},
        {"action": "subscribe", "types": ["order.status_changed"], "order": 1},
        {"action": "subscribe"},
        {"action": "subscribe", "types": []},
        {"action": "nope"},
        ["not", "an", "object"],
        {"action": "resume", "last_event_id": "x"},
        {"action": "resume", "last_event_id": 5},  # the log is empty: nothing to resume from
    ]
    received = []
    for message in sent:
        await socket.send_json_to(message)
        received.append(await socket.receive_json_from(timeout=3))
    await socket.disconnect()
    return received


@pytest.mark.django_db(transaction=True)
def test_control_messages_the_consumer_sends_match_their_schema(spec):
    received = async_to_sync(_control_messages)()
    assert [m["type"] for m in received] == [
        "pong",
        "subscribed",
        "subscribed",
        "error",
        "error",
        "error",
        "error",
        "resync_required",
    ]
    for message in received:
        _assert_valid(spec, ("type", message["type"]), message)


def test_asyncapi_subscribe_and_limits_match_the_consumer(spec):
    # The subscribe schema's types are exactly what the consumer accepts.
    subscribe = _deref(spec, spec["components"]["messages"]["subscribe"]["payload"])
    (listed,) = [s for s in subscribe["properties"]["types"]["oneOf"] if s["type"] == "array"]
    assert _deref(spec, listed["items"])["enum"] == EVENT_TYPES
    for name in ("MAX_MESSAGE_BYTES", "RATE_BURST"):
        assert str(getattr(consumers, name)) in spec["operations"]["sendActions"]["summary"]


# ---- the prose guide ---------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_realtime_md_documents_every_event_type(markdown, event_type):
    assert f"\n### {event_type}\n" in markdown, f"docs/realtime.md has no section '### {event_type}'"
    assert f'"type": "{event_type}"' in markdown, f"docs/realtime.md has no example {event_type} envelope"


@pytest.mark.parametrize("word", CLIENT_ACTIONS + CONTROL_TYPES + ERROR_CODES + RESYNC_REASONS)
def test_realtime_md_mentions_every_action_message_and_error(markdown, word):
    assert word in markdown


@pytest.mark.parametrize("name", sorted(CLOSE_CODES))
def test_realtime_md_lists_every_close_code(markdown, name):
    assert f"| {CLOSE_CODES[name]} |" in markdown, f"{name} = {CLOSE_CODES[name]} is not in the close-code table"


def test_close_codes_are_ones_daphne_lets_an_application_send():
    # Any other code fails inside Daphne, and the client sees 1011 instead of what the docs promise.
    for name, code in CLOSE_CODES.items():
        assert code == 1000 or 3000 <= code <= 4999, f"{name} = {code}: Daphne would close with 1011"


def test_realtime_md_close_code_table_lists_nothing_the_code_does_not_have(markdown):
    table = markdown[markdown.index("Close codes the server uses:") :]
    table = table[: table.index("\n\n", table.index("| --- |"))]
    listed = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, flags=re.MULTILINE)}
    assert listed, "no close codes found in the close-code table"
    assert listed <= set(CLOSE_CODES.values()) | {1011}  # 1011: a server error, not the consumer's


def test_realtime_md_states_the_limits_the_code_has(markdown):
    assert f"{consumers.MAX_MESSAGE_BYTES} bytes" in markdown
    assert f"bursts of {consumers.RATE_BURST}, refilled at {consumers.RATE_PER_SECOND:g} a second" in markdown
    assert f"within {services.TICKET_TTL_SECONDS} seconds" in markdown
    assert relay.POLL_SECONDS == 1 and "it also looks every second" in markdown
    for setting in ("REALTIME_EVENT_RETENTION_DAYS", "REALTIME_HEARTBEAT_SECONDS"):
        assert setting in markdown


def test_realtime_md_json_examples_match_the_schemas(spec, markdown):
    blocks = re.findall(r"^ *```json\n(.*?)^ *```", markdown, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) > len(EVENT_TYPES)
    documented = _messages(spec)
    for block in blocks:
        message = json.loads(block)
        discriminator = ("type", message["type"]) if "type" in message else ("action", message["action"])
        assert discriminator in documented, f"docs/realtime.md shows an undocumented message: {block}"
        _assert_valid(spec, discriminator, message)
