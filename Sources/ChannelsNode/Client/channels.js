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
      this.state = "closed";
      this.epoch = null;
      this.offset = null;
      this.channel = null;
      this.attempt = 0;
      this.socket = null;
      this.stopped = true;
    }

    connect() {
      this.stopped = false;
      this.open();
    }

    close() {
      this.stopped = true;
      if (this.socket) this.socket.close(1000);
    }

    send(object) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      this.socket.send(typeof object === "string" ? object : JSON.stringify(object));
      return true;
    }

    url() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
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
      const socket = new WebSocket(this.url());
      this.socket = socket;
      socket.onopen = () => {
        this.attempt = 0;
        this.setState("open");
      };
      socket.onmessage = (event) => this.receive(event.data);
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.setState("closed");
        this.dispatchEvent(new CustomEvent("close", { detail: { code: event.code, reason: event.reason } }));
        if (this.stopped || isRefusal(event.code)) return;
        // Full jitter: a node's clients do not all come back at the same moment.
        const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
        this.attempt += 1;
        setTimeout(() => { if (!this.stopped) this.open(); }, Math.random() * ceiling);
      };
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
