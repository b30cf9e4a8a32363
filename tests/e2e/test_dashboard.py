"""The browser dashboard at `/`, driven in Debian's Chromium by Playwright
against the hub's own processes (embedded, or services mode in CI)."""

import os
import shutil
from pathlib import Path

import pytest
from knox.models import AuthToken
from playwright.sync_api import expect

from notify.models import FINAL_STATUSES, InboxMessage, Notification
from orders.models import Order
from tests.e2e.conftest import api_client, token_for, wait_until
from tests.factories import PASSWORD, StaffFactory, UserFactory
from tests.fakes import free_port
from tests.helpers import SEED_ORDER

pytestmark = pytest.mark.e2e

LIVE_TIMEOUT_MS = 15_000  # an event, or a notification the worker delivers
RECONNECT_TIMEOUT_MS = 30_000  # the page's backoff tops out at about 10 s
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
PHONE_SCREENSHOT = SCREENSHOT.with_name("dashboard-phone.png")
PHONE = 390  # px, a phone's width


@pytest.fixture
def browser_page(chromium):
    """page(width=1280) -> a new page in a context of its own (its own storage)."""
    contexts = []

    def open_page(width=1280, height=800):
        context = chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        return context.new_page()

    expect.set_options(timeout=LIVE_TIMEOUT_MS)
    yield open_page
    for context in contexts:
        context.close()


def _sign_in(page, url, user):
    page.goto(f"{url}/")
    page.fill("#signin input[name=username]", user.username)
    page.fill("#signin input[name=password]", PASSWORD)
    page.click("#signin [type=submit]")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#whoami")).to_contain_text(user.username)


def _customer_api(url, user):
    """`user`'s API client, after creating the customer their email makes theirs."""
    api = api_client(url, token_for(url, user))
    r = api.post("/customers/", json={"name": user.get_full_name() or user.username, "email": user.email})
    assert r.status_code == 201, r.text
    return api


def _place_order(api, number):
    r = api.post("/orders/", json={**SEED_ORDER, "order_number": number})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _order_row(page, pk):
    return page.locator(f"table#orders tbody tr[data-order-id='{pk}']")


def test_signing_in_by_keyboard_and_out_leaves_no_secret_behind(hub, browser_page):
    user = UserFactory(password=PASSWORD)
    page = browser_page()
    page.goto(f"{hub.url}/")
    expect(page.locator("#connection")).to_be_hidden()  # no live feed to be offline before signing in
    page.focus("#signin input[name=username]")
    page.keyboard.type(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#connection")).to_have_text("connected", ignore_case=True)
    expect(page.locator("#signin")).to_be_hidden()
    assert AuthToken.objects.filter(user=user).count() == 1

    assert page.url == f"{hub.url}/"
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []  # no session cookie either: the token is all

    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    expect(page.locator("#connection")).to_be_hidden()
    wait_until(lambda: not AuthToken.objects.filter(user=user).exists(), what="the token revoked")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_wrong_password_is_told_and_opens_nothing(hub, browser_page):
    user = UserFactory(password=PASSWORD)
    page = browser_page()
    page.goto(f"{hub.url}/")
    page.fill("#signin input[name=username]", user.username)
    page.fill("#signin input[name=password]", "not-the-password")
    page.click("#signin [type=submit]")
    expect(page.locator("#signin-error")).not_to_be_empty()
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#connection")).to_be_hidden()


def test_an_order_placed_through_the_api_appears_without_a_reload(hub, browser_page):
    user = UserFactory(password=PASSWORD)
    api = _customer_api(hub.url, user)
    page = browser_page()
    _sign_in(page, hub.url, user)
    page.evaluate("window.loadedOnce = true")

    pk = _place_order(api, "ORD-LIVE-1")

    row = _order_row(page, pk)
    expect(row.locator(".order-number")).to_have_text("ORD-LIVE-1")
    expect(row.locator(".badge")).to_have_attribute("data-status", "pending")
    expect(page.locator("#feed li[data-type='order.created']")).to_have_count(1)
    assert page.evaluate("window.loadedOnce") is True  # the same page, not a reload
    # Its notifications come live too, and reach `sent` (console mail in this hub).
    expect(page.locator("table#notifications tbody tr .badge[data-status='sent']").first).to_be_visible()


def test_staff_change_a_status_and_the_owner_sees_the_badge_move(hub, browser_page):
    owner, staff = UserFactory(password=PASSWORD), StaffFactory(password=PASSWORD)
    pk = _place_order(_customer_api(hub.url, owner), "ORD-STAFF-1")
    owner_page, staff_page = browser_page(), browser_page()
    _sign_in(owner_page, hub.url, owner)
    _sign_in(staff_page, hub.url, staff)
    expect(owner_page.locator("#order-detail select[name=status]")).to_have_count(0)  # not staff

    _order_row(staff_page, pk).click()
    expect(staff_page.locator("#order-history li")).not_to_have_count(0)
    staff_page.select_option("#order-detail select[name=status]", "confirmed")
    staff_page.click("#change-status")

    for page in (staff_page, owner_page):
        expect(_order_row(page, pk).locator(".badge")).to_have_attribute("data-status", "confirmed")
    assert Order.objects.get(pk=pk).status == "confirmed"
    expect(owner_page.locator("#feed li[data-type='order.status_changed']")).to_have_count(1)


def test_a_notification_sent_from_the_form_reaches_sent_live(hub, browser_page):
    user = UserFactory(password=PASSWORD)
    page = browser_page()
    _sign_in(page, hub.url, user)

    form = page.locator("form#send-notification")
    form.locator("select[name=recipient_type]").select_option("email")
    form.locator("input[name=recipient]").fill("not-an-address")
    form.locator("input[name=title]").fill("Hello")
    form.locator("textarea[name=message]").fill("From the dashboard")
    form.locator("[type=submit]").click()
    expect(page.locator("#send-error")).to_contain_text("email")  # the API's 400, shown
    expect(page.locator("table#notifications tbody tr[data-notification-id]")).to_have_count(0)

    form.locator("input[name=recipient]").fill("reader@example.com")
    form.locator("[type=submit]").click()
    row = page.locator("table#notifications tbody tr[data-notification-id]")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_attribute("data-status", "sent", timeout=LIVE_TIMEOUT_MS * 2)
    expect(page.locator("#stats [data-stat='sent']")).to_have_text("1")
    expect(page.locator("#stats [data-stat='success_rate']")).to_contain_text("100")


def test_the_page_reconnects_after_the_server_drops_it_and_shows_what_it_missed(hub, browser_page):
    user = UserFactory(password=PASSWORD)
    api = _customer_api(hub.url, user)
    first = _place_order(api, "ORD-BEFORE")
    page = browser_page()
    _sign_in(page, hub.url, user)
    expect(_order_row(page, first)).to_be_visible()
    seen = page.evaluate("window.hub.lastEventId")

    hub.stop("web")  # every socket of the page's server goes with it
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "connected")
    # Meanwhile another web process takes writes.
    other = hub.start_web(name="web2", port=free_port())
    missed = _place_order(api_client(other, token_for(other, user)), "ORD-MISSED")
    hub.stop("web2")
    hub.start_web()

    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=RECONNECT_TIMEOUT_MS)
    expect(_order_row(page, missed).locator(".order-number")).to_have_text("ORD-MISSED")
    created = page.locator("#feed li[data-type='order.created']")
    expect(created).to_have_count(1)  # the missed one, once; the feed starts at sign-in
    expect(created).to_contain_text("ORD-MISSED")
    assert page.evaluate("window.hub.lastEventId") > seen


def test_a_user_sees_none_of_another_users_orders(hub, browser_page):
    ann, bob = UserFactory(password=PASSWORD), UserFactory(password=PASSWORD)
    ann_api, bob_api = _customer_api(hub.url, ann), _customer_api(hub.url, bob)
    ann_first, bob_first = _place_order(ann_api, "ORD-ANN-1"), _place_order(bob_api, "ORD-BOB-1")
    page = browser_page()
    _sign_in(page, hub.url, ann)
    expect(_order_row(page, ann_first)).to_be_visible()

    bob_second = _place_order(bob_api, "ORD-BOB-2")
    ann_second = _place_order(ann_api, "ORD-ANN-2")
    expect(_order_row(page, ann_second)).to_be_visible()  # everything before it has come too

    expect(page.locator("table#orders tbody tr[data-order-id]")).to_have_count(2)
    for pk in (bob_first, bob_second):
        expect(_order_row(page, pk)).to_have_count(0)
    expect(page.locator("#feed")).not_to_contain_text("ORD-BOB")
    expect(page.locator("table#notifications")).not_to_contain_text(bob.email)


def _send_in_app(api, username, *titles):
    """Sends `username` one in_app notification per title, in one request; the notifications' ids."""
    items = [{"recipient_type": "in_app", "recipient": username, "title": t, "message": f"About {t}"} for t in titles]
    r = api.post("/notifications/bulk/", json={"notifications": items})
    assert r.status_code == 202, r.text
    return r.json()["ids"]


def _bell(page):
    return page.locator("#inbox-button")


def _inbox_item(page, title):
    return page.locator("#inbox-list li", has_text=title)


def _expect_unread(page, n):
    """The bell's badge and accessible name say `n` unread (no badge at 0)."""
    if n:
        expect(page.locator("#inbox-badge")).to_have_text(str(n))
        expect(_bell(page)).to_have_accessible_name(f"Inbox, {n} unread")
    else:
        expect(page.locator("#inbox-badge")).to_be_hidden()
        expect(_bell(page)).to_have_accessible_name("Inbox")


def test_an_in_app_message_sent_from_the_form_rings_the_bell_live(hub, browser_page):
    ann, bob = UserFactory(password=PASSWORD), UserFactory(password=PASSWORD)
    ann_page, bob_page = browser_page(), browser_page()
    _sign_in(ann_page, hub.url, ann)
    _sign_in(bob_page, hub.url, bob)
    _expect_unread(ann_page, 0)
    ann_page.evaluate("window.loadedOnce = true")

    form = bob_page.locator("form#send-notification")
    form.locator("select[name=recipient_type]").select_option("in_app")
    expect(form.locator("input[name=recipient]")).to_have_attribute("placeholder", "Username, e.g. demo_user")
    form.locator("input[name=recipient]").fill(ann.username)
    form.locator("input[name=title]").fill("Lunch at noon")
    form.locator("textarea[name=message]").fill("In the big room")
    form.locator("[type=submit]").click()
    row = bob_page.locator("table#notifications tbody tr[data-notification-id]")
    expect(row.locator(".channel-in_app")).to_have_text("In-app")
    expect(row.locator(".badge")).to_have_attribute("data-status", "sent")

    _expect_unread(ann_page, 1)
    _bell(ann_page).click()
    expect(_bell(ann_page)).to_have_attribute("aria-expanded", "true")
    item = _inbox_item(ann_page, "Lunch at noon")
    expect(item).to_be_visible()
    expect(item).to_contain_text("In the big room")
    expect(item).to_have_class("inbox-item is-unread")
    expect(item.locator("button[data-change=read]")).to_have_accessible_name("Mark read: Lunch at noon")
    expect(ann_page.locator("#feed li[data-type='inbox.message_created']")).to_contain_text("Lunch at noon")
    # Opening the panel told the hub the reader has seen it: still unread, no longer unseen.
    ann_api = api_client(hub.url, token_for(hub.url, ann))
    wait_until(lambda: ann_api.get("/inbox/counts/").json() == {"unseen": 0, "unread": 1}, what="the inbox seen")
    _expect_unread(ann_page, 1)
    assert ann_page.evaluate("window.loadedOnce") is True  # the same page, not a reload
    expect(bob_page.locator("#inbox-list li")).to_have_count(0)  # the sender's inbox has none of it
    _expect_unread(bob_page, 0)

    ann_page.keyboard.press("Escape")
    expect(ann_page.locator("#inbox-panel")).to_be_hidden()
    expect(_bell(ann_page)).to_be_focused()


def test_reading_a_message_on_one_device_shows_on_the_other(hub, browser_page):
    user = UserFactory(password=PASSWORD)
    staff_api = api_client(hub.url, token_for(hub.url, StaffFactory(password=PASSWORD)))
    (notification_id,) = _send_in_app(staff_api, user.username, "Your parcel")
    desk, phone = browser_page(), browser_page(width=PHONE, height=844)
    for page in (desk, phone):
        _sign_in(page, hub.url, user)
        _expect_unread(page, 1)  # from the snapshot
        _bell(page).click()
    item = _inbox_item(phone, "Your parcel")
    message = InboxMessage.objects.get(notification_id=notification_id)
    expect(item).to_have_attribute("data-message-id", str(message.pk))
    # On the phone the panel fits the screen.
    box = phone.locator("#inbox-panel").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE, box
    assert phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0

    _inbox_item(desk, "Your parcel").locator("button[data-change=read]").click()
    for page in (desk, phone):
        _expect_unread(page, 0)
        expect(_inbox_item(page, "Your parcel")).to_have_class("inbox-item")
        expect(_inbox_item(page, "Your parcel").locator("button[data-change=unread]")).to_contain_text("Mark unread")

    item.locator("button[data-change=unread]").click()
    _expect_unread(desk, 1)
    expect(_inbox_item(desk, "Your parcel")).to_have_class("inbox-item is-unread")

    item.locator("button[data-change=archive]").click()
    for page in (desk, phone):
        expect(page.locator("#inbox-list li")).to_have_count(0)
        expect(page.locator("#inbox-empty")).to_be_visible()
        _expect_unread(page, 0)


def test_read_all_clears_the_count_on_every_page_and_another_user_sees_none(hub, browser_page):
    ann, bob = UserFactory(password=PASSWORD), UserFactory(password=PASSWORD)
    sender = api_client(hub.url, token_for(hub.url, UserFactory(password=PASSWORD)))
    first, second, bob_page = browser_page(), browser_page(), browser_page()
    _sign_in(first, hub.url, ann)
    _sign_in(second, hub.url, ann)
    _sign_in(bob_page, hub.url, bob)

    titles = [f"Note {n}" for n in range(1, 23)]  # more than the first page's 20
    _send_in_app(sender, ann.username, *titles)
    for page in (first, second):
        _expect_unread(page, 22)
    _bell(first).click()
    expect(first.locator("#inbox-list li")).to_have_count(22)  # live, so all of them, newest first
    expect(first.locator("#inbox-list li").first).to_contain_text("Note 22")

    first.reload()  # the snapshot: the first page, then the rest on request
    expect(first.locator("#connection")).to_have_attribute("data-state", "connected")
    _expect_unread(first, 22)
    _bell(first).click()
    expect(first.locator("#inbox-list li")).to_have_count(20)
    first.click("#inbox-more")
    expect(first.locator("#inbox-list li")).to_have_count(22)
    expect(first.locator("#inbox-more")).to_be_hidden()
    expect(first.locator("#inbox-list li").last).to_contain_text("Note 1")

    first.click("#inbox-read-all")
    for page in (first, second):
        _expect_unread(page, 0)
        expect(page.locator("#inbox-list li.is-unread")).to_have_count(0)
    expect(second.locator("#feed li[data-type='inbox.counts_changed']").first).to_contain_text("all marked read")

    # Bob's page had none of it: a message of his own, after all of Ann's, comes alone.
    _send_in_app(sender, bob.username, "For Bob")
    _expect_unread(bob_page, 1)
    expect(bob_page.locator("#inbox-list li")).to_have_count(1)
    expect(bob_page.locator("#feed")).not_to_contain_text("Note 1")
    expect(bob_page.locator("#feed li[data-type^='inbox.']")).to_have_count(2)  # his message and his count
    _expect_unread(first, 0)

    first.click("#signout")
    expect(first.locator("#signin")).to_be_visible()
    assert first.locator("#inbox-list li").count() == 0


def test_the_dashboard_fits_a_phone_and_a_desktop(hub, browser_page, tmp_path):
    staff, user = StaffFactory(password=PASSWORD), UserFactory(password=PASSWORD)
    pages = {width: browser_page(width=width, height=844 if width == PHONE else 800) for width in (PHONE, 1280)}
    for page in pages.values():
        _sign_in(page, hub.url, staff)

    api = _customer_api(hub.url, user)
    first, *_ = [_place_order(api, number) for number in ("ORD-1001", "ORD-1002", "ORD-1003")]
    staff_api = api_client(hub.url, token_for(hub.url, staff))
    r = staff_api.put(f"/orders/{first}/status/", json={"status": "confirmed"})
    assert r.status_code == 200, r.text
    wait_until(lambda: not _unsent(), what="the orders' notifications delivered")

    for width, page in pages.items():
        expect(_order_row(page, first).locator(".badge")).to_have_attribute("data-status", "confirmed")
        expect(page.locator("table#orders tbody tr[data-order-id]")).to_have_count(3)
        expect(page.locator("#chart svg")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{overflow}px wider than a {width}px screen"
        page.screenshot(path=tmp_path / f"dashboard-{width}.png", full_page=True, animations="disabled")
    # On the phone the live feed comes before the tables, not 3,000 px down below them.
    phone = pages[PHONE]
    feed_top = phone.locator("#feed-title").bounding_box()["y"]
    assert feed_top < phone.locator("#orders-title").bounding_box()["y"]
    assert feed_top < phone.locator("#notifications-title").bounding_box()["y"]
    # `HUB_UPDATE_SCREENSHOT=1 make test` refreshes the README's pictures from this run.
    if os.environ.get("HUB_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "dashboard-1280.png", SCREENSHOT)
        shutil.copyfile(tmp_path / f"dashboard-{PHONE}.png", PHONE_SCREENSHOT)


def _unsent():
    return Notification.objects.exclude(status__in=FINAL_STATUSES).exists()


@pytest.mark.parametrize("page_path, rendered", [("/api/docs/", ".opblock-tag"), ("/api/redoc/", "[role=menu]")])
def test_the_api_docs_render_offline_in_their_groups(hub, browser_page, page_path, rendered):
    page = browser_page()
    elsewhere, refused = [], []
    page.on("request", lambda request: None if request.url.startswith(hub.url) else elsewhere.append(request.url))
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )

    page.goto(f"{hub.url}{page_path}")

    expect(page.locator(rendered).first).to_be_visible()
    for tag in ("auth", "customers", "orders", "notifications", "realtime", "health"):
        expect(page.get_by_text(tag, exact=True).first).to_be_visible()
    # Whatever the page asks of another host, its own policy stops before it leaves.
    external = [url for url in elsewhere if not url.startswith(("data:", "blob:"))]
    assert all(any(url in text for text in refused) for url in external), (external, refused)


def test_the_admin_order_list_fits_a_phone(hub, browser_page):
    staff, user = StaffFactory(password=PASSWORD, is_superuser=True), UserFactory(password=PASSWORD)
    _place_order(_customer_api(hub.url, user), "ORD-20261202-PHONE1")
    page = browser_page(width=PHONE, height=844)
    page.goto(f"{hub.url}/admin/login/?next=/admin/orders/order/")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")

    expect(page.locator("#result_list")).to_contain_text("ORD-20261202-PHONE1")
    overflow = page.evaluate(
        "Math.max(document.documentElement.scrollWidth - document.documentElement.clientWidth,"
        " document.querySelector('.results').scrollWidth - document.querySelector('.results').clientWidth)"
    )
    assert overflow <= 0, f"the order list is {overflow}px wider than a {PHONE}px screen"
    expect(page.locator("#result_list")).to_contain_text("Pending")  # number, status and amount stay
