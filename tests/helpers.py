"""Payloads from the seed's API flow, and assertions shared by the API tests."""

SEED_USER = {
    "username": "demo_user",
    "password": "secure_password123",
    "email": "demo@example.com",
    "first_name": "Demo",
    "last_name": "User",
}
SEED_CUSTOMER = {
    "name": "John Doe",
    "email": "john.doe@example.com",
    "phone": "+1234567890",
    "telegram_chat_id": "123456789",
    "address": "123 Main St",
    "city": "New York",
    "country": "USA",
    "postal_code": "10001",
}
SEED_ORDER = {
    "order_number": "ORD-001",
    "total_amount": "149.99",
    "currency": "INR",
    "shipping_address": "123 Main St, Mumbai, Maharashtra 400001",
    "shipping_method": "standard",
    "status": "pending",
    "notes": "Urgent delivery required",
}
SEED_SHIP = {"status": "shipped", "tracking_number": "TRK123456789", "notes": "Package shipped via express delivery"}
SEED_PREFERENCES = {"email_enabled": True, "telegram_enabled": False, "order_updates": True, "promotional": False}

SEED_SEND = {
    "title": "Demo Notification",
    "message": "This is a test notification!",
    "recipient_type": "email",
    "recipient": "demo@example.com",
    "priority": "high",
}
SEED_BULK = {
    "notifications": [
        {
            "title": "Bulk Notification 1",
            "message": "First bulk message",
            "recipient_type": "email",
            "recipient": "user1@example.com",
        },
        {
            "title": "Bulk Notification 2",
            "message": "Second bulk message",
            "recipient_type": "telegram",
            "recipient": "123456789",
        },
    ]
}


def assert_validation_error(response, *fields):
    """400 in the API's error shape, naming exactly `fields`."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert isinstance(error["message"], str) and error["message"]
    assert set(error["fields"]) == set(fields)
    for messages in error["fields"].values():
        assert isinstance(messages, list) and messages
    return error
