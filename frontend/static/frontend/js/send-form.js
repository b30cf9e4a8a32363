// The form that sends one notification (POST /notifications/send/).

import { api } from "./api.js";
import { $, showError } from "./dom.js";

const LABELS = {
  recipient_type: "Channel",
  recipient: "Recipient",
  title: "Title",
  message: "Message",
  priority: "Priority",
};
const PLACEHOLDERS = {
  email: "name@example.com",
  telegram: "Chat id, e.g. 123456789",
  in_app: "Username, e.g. demo_user",
};

export function setUpSendForm({ onSent }) {
  const form = $("#send-notification");
  const error = $("#send-error");
  const success = $("#send-success");
  const type = form.elements.recipient_type;
  const recipient = form.elements.recipient;
  const button = form.querySelector('button[type="submit"]');

  const showPlaceholder = () => {
    recipient.placeholder = PLACEHOLDERS[type.value] ?? "";
    recipient.inputMode = type.value === "email" ? "email" : "text";
  };
  type.addEventListener("change", showPlaceholder);
  showPlaceholder();

  function markInvalid(fields) {
    for (const name of Object.keys(LABELS)) {
      const input = form.elements[name];
      if (!input) continue;
      if (fields?.[name]) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(form));
    button.disabled = true;
    success.textContent = "";
    showError(error, null);
    markInvalid(null);
    try {
      const sent = await api.sendNotification(body, globalThis.crypto?.randomUUID?.());
      form.elements.title.value = "";
      form.elements.message.value = "";
      success.textContent = `Notification #${sent.id} accepted for delivery.`;
      onSent(sent);
    } catch (err) {
      showError(error, err, LABELS);
      markInvalid(err.fields);
    } finally {
      button.disabled = false;
    }
  });

  return {
    reset() {
      form.reset();
      showPlaceholder();
      success.textContent = "";
      showError(error, null);
      markInvalid(null);
    },
  };
}
