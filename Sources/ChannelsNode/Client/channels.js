// channels.js: the browser client of a swift-channels node. One readable file, no build step; the node
// serves it at /channels.js.
//
//   const client = new ChannelsClient("/ws/chat/lobby/", { presence: true });
//   client.addEventListener("message", (event) => console.log(event.detail));      // a frame of the consumer
//   client.addEventListener("presence", (event) => console.log(event.detail));     // {type: "presence" | "join" | "leave", ...}
//   client.addEventListener("recovered", (event) => console.log(event.detail));    // {epoch, offset}: nothing was missed
//   client.addEventListener("unrecoverable", (event) => reloadState());            // messages were missed: reload
//   client.addEventListener("state", (event) => console.log(event.detail));        // "connecting" | "open" | "closed"
//   client.connect();
//   client.send({ message: "hi" });
//
// After any close except a refusal it reconnects with exponential backoff and full jitter, and asks the
// node (any node) for what it missed with the offset and epoch of the last message it got
// (?recover=1&epoch=E&offset=N). Each message is delivered once: replayed copies are dropped.
//
// Transports: a WebSocket by default; { transport: "sse" } receives the same frames as server-sent events
// (an EventSource on the same path; send() then returns false). A page that only listens marks its route
// { receiveOnly: true }: after the WebSocket fails to open three times in a row (a proxy that blocks
// WebSockets), the client goes on with server-sent events by itself.
(function (global) {
  "use strict";

  // Closes after which reconnecting cannot help: policy (1008) and handshake refusals (4400-4499, but the
  // ping timeout 4408 and the rate limit 4429 are worth a retry).
  function isRefusal(code) {
    return code === 1008 || (code >= 4400 && code < 4500 && code !== 4408 && code !== 4429);
  }

  class ChannelsClient extends EventTarget {
    constructor(path, options = {}) {
      super();
      this.path = path;
      this.presence = options.presence === true;
      this.recover = options.recover !== false;
      this.minDelay = options.minDelay || 250;
      this.maxDelay = options.maxDelay || 10000;
      this.query = options.query || "";
      this.transport = options.transport === "sse" ? "sse" : "websocket";
      this.receiveOnly = options.receiveOnly === true;
      this.failedOpens = 0;
      this.state = "closed";
      this.epoch = null;
      this.offset = null;
      this.channel = null;
      this.attempt = 0;
      this.socket = null;
      this.source = null;
      this.stopped = true;
    }

    connect() {
      this.stopped = false;
      this.open();
    }

    close() {
      this.stopped = true;
      if (this.socket) this.socket.close(1000);
      if (this.source) {
        this.source.close();
        this.source = null;
        this.setState("closed");
      }
    }

    send(object) {
      if (this.transport === "sse" || !this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      this.socket.send(typeof object === "string" ? object : JSON.stringify(object));
      return true;
    }

    url() {
      const secure = location.protocol === "https:";
      const scheme = this.transport === "sse" ? (secure ? "https" : "http") : (secure ? "wss" : "ws");
      const params = new URLSearchParams(this.query);
      if (this.recover) {
        params.set("recover", "1");
        if (this.epoch !== null && this.offset !== null) {
          params.set("epoch", this.epoch);
          params.set("offset", String(this.offset));
        }
      }
      if (this.presence) params.set("presence", "1");
      const query = params.toString();
      return `${scheme}://${location.host}${this.path}${query ? "?" + query : ""}`;
    }

    setState(state) {
      this.state = state;
      this.dispatchEvent(new CustomEvent("state", { detail: state }));
    }

    open() {
      this.setState("connecting");
      if (this.transport === "sse") return this.openEventStream();
      const socket = new WebSocket(this.url());
      let opened = false;
      this.socket = socket;
      socket.onopen = () => {
        opened = true;
        this.attempt = 0;
        this.failedOpens = 0;
        this.setState("open");
      };
      socket.onmessage = (event) => this.receive(event.data);
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.socket = null;
        if (!opened) {
          this.failedOpens += 1;
          if (this.receiveOnly && this.failedOpens >= 3) this.transport = "sse";
        }
        this.ended(event.code, event.reason);
      };
    }

    // The node writes each frame as one event: unnamed for the consumer's frames, "recovered" /
    // "unrecoverable" / "presence" for its own, "close" with {code, reason} before it ends the stream.
    // The client reconnects itself (with jitter, and its position in the query) rather than leave it
    // to the EventSource.
    openEventStream() {
      const source = new EventSource(this.url());
      this.source = source;
      source.onopen = () => {
        this.attempt = 0;
        this.setState("open");
      };
      source.onmessage = (event) => this.receive(event.data);
      for (const name of ["recovered", "unrecoverable", "presence"]) {
        source.addEventListener(name, (event) => this.receive(event.data));
      }
      const end = (code, reason) => {
        if (this.source !== source) return;
        source.close();
        this.source = null;
        this.ended(code, reason);
      };
      source.addEventListener("close", (event) => {
        let detail = {};
        try { detail = JSON.parse(event.data); } catch (error) { /* a close without a reason */ }
        end(detail.code || 1006, detail.reason || "");
      });
      source.onerror = () => end(1006, "");
    }

    ended(code, reason) {
      this.setState("closed");
      this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
      if (this.stopped || isRefusal(code)) return;
      // Full jitter: a node's clients do not all come back at the same moment.
      const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
      this.attempt += 1;
      setTimeout(() => { if (!this.stopped) this.open(); }, Math.random() * ceiling);
    }

    receive(text) {
      let frame;
      try { frame = JSON.parse(text); } catch (error) { return; }
      if (frame.type === "recovery") {
        if (frame.recovered && this.offset !== null) {
          this.dispatchEvent(new CustomEvent("recovered", { detail: { epoch: frame.epoch, offset: frame.offset } }));
        } else if (!frame.recovered) {
          this.dispatchEvent(new CustomEvent("unrecoverable", { detail: { epoch: frame.epoch, offset: frame.offset } }));
        }
        if (!frame.recovered || this.offset === null) {
          this.epoch = frame.epoch;
          this.offset = frame.offset;
        }
        return;
      }
      if (frame.type === "presence" || frame.type === "join" || frame.type === "leave") {
        if (frame.type === "presence" && frame.channel) this.channel = frame.channel;
        this.dispatchEvent(new CustomEvent("presence", { detail: frame }));
        return;
      }
      if (typeof frame.offset === "number" && typeof frame.epoch === "string") {
        if (frame.epoch === this.epoch && this.offset !== null && frame.offset <= this.offset) return;
        this.epoch = frame.epoch;
        this.offset = frame.offset;
      }
      this.dispatchEvent(new CustomEvent("message", { detail: frame }));
    }
  }

  global.ChannelsClient = ChannelsClient;
})(typeof window !== "undefined" ? window : globalThis);
