// The /ws/events/ connection: a fresh one-time ticket per attempt, resume from the last
// event handled, exponential backoff with jitter, and a watchdog for silent connections.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
// The server sends a heartbeat every 25 s; two missed ones mean the connection is dead.
const SILENCE_MS = 60_000;

export function backoffDelay(attempt) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

export class EventSocket {
  #ws = null;
  #running = false;
  #generation = 0;
  #attempt = 0;
  #retryTimer = null;
  #silenceTimer = null;

  // getTicket() -> Promise<{ticket, last_event_id}>; lastEventId() -> number|null, the last
  // event handled; onPosition(id) when there is none yet, with the log's position when the
  // ticket was issued; onMessage(message); onOpen(); onState("connected"|"reconnecting"|"offline").
  constructor({ getTicket, lastEventId, onPosition, onMessage, onOpen, onState }) {
    Object.assign(this, { getTicket, lastEventId, onPosition, onMessage, onOpen, onState });
    window.addEventListener("online", () => this.#reconnectNow());
    window.addEventListener("offline", () => {
      if (!this.#running) return;
      this.#drop();
      this.#setState("offline");
    });
  }

  start() {
    this.#running = true;
    this.#generation++;
    this.#attempt = 0;
    this.#connect();
  }

  stop() {
    this.#running = false;
    this.#generation++;
    this.#drop();
    this.#setState("offline");
  }

  async #connect() {
    clearTimeout(this.#retryTimer);
    if (!this.#running) return;
    if (!navigator.onLine) {
      this.#setState("offline");
      return;
    }
    this.#setState("reconnecting");
    const generation = this.#generation;
    let ticket;
    try {
      ticket = await this.getTicket();
    } catch (error) {
      if (generation === this.#generation && error.status !== 401) this.#retry();
      return;
    }
    if (generation !== this.#generation || this.#ws) return;

    // Resume from the last event handled or, on a first connection, from where the log stood
    // when the ticket was issued: nothing that commits in between is missed.
    if (this.lastEventId() === null) this.onPosition(ticket.last_event_id);
    const url = new URL("/ws/events/", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("ticket", ticket.ticket);
    url.searchParams.set("last_event_id", String(this.lastEventId()));

    const ws = new WebSocket(url);
    this.#ws = ws;
    ws.onopen = () => {
      this.#attempt = 0;
      this.#expectTraffic();
      this.#setState("connected");
      this.onOpen();
    };
    ws.onmessage = (message) => {
      this.#expectTraffic();
      let parsed;
      try {
        parsed = JSON.parse(message.data);
      } catch {
        return;
      }
      this.onMessage(parsed);
    };
    ws.onclose = () => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      clearTimeout(this.#silenceTimer);
      this.#retry();
    };
  }

  #retry() {
    clearTimeout(this.#retryTimer);
    if (!this.#running) return;
    this.#setState(navigator.onLine ? "reconnecting" : "offline");
    this.#retryTimer = setTimeout(() => this.#connect(), backoffDelay(this.#attempt++));
  }

  #reconnectNow() {
    if (!this.#running || this.#ws) return;
    this.#attempt = 0;
    this.#connect();
  }

  #expectTraffic() {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      this.#drop();
      this.#retry();
    }, SILENCE_MS);
  }

  // Forget the current socket at once, without waiting for a closing handshake.
  #drop() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#silenceTimer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close();
    }
  }

  #setState(state) {
    this.onState(state);
  }
}
