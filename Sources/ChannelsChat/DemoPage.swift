/// The demo chat page served at `/`: plain HTML and JavaScript on the node's `/channels.js`, no build step.
public enum DemoPage {
    public static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <title>swift-channels chat</title>
    <style>
      body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
      #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; white-space: pre-wrap; }
      #status, #presence, .note { color: #666; }
      input { font-size: 1rem; padding: .3rem; }
    </style>
    </head>
    <body>
    <h1>swift-channels chat</h1>
    <p>Room <input id="room" value="lobby" size="12"> <button id="join">Join</button> <span id="status">not connected</span></p>
    <p id="presence">Here: nobody yet</p>
    <div id="log"></div>
    <p><input id="message" size="40" placeholder="Say something" disabled> <button id="send" disabled>Send</button></p>
    <script src="/channels.js"></script>
    <script>
    // The page uses channels.js: it reconnects by itself, recovers what it missed, and shows presence.
    let client = null;
    let room = "lobby";
    const members = new Map();
    const log = document.getElementById("log");
    const status = document.getElementById("status");
    function show(text, kind) {
      const line = document.createElement("div");
      line.className = kind || "message";
      line.textContent = text;
      log.appendChild(line);
      log.scrollTop = log.scrollHeight;
    }
    function showPresence() {
      const names = Array.from(members.values()).map((member) => member.user || member.channel.slice(-6));
      document.getElementById("presence").textContent = "Here: " + (names.length ? names.join(", ") : "nobody yet");
    }
    function join() {
      if (client) client.close();
      room = document.getElementById("room").value || "lobby";
      members.clear();
      client = new ChannelsClient(`/ws/chat/${encodeURIComponent(room)}/`, { presence: true });
      client.addEventListener("state", (event) => {
        const open = event.detail === "open";
        status.textContent = open ? "connected to " + room : event.detail;
        document.getElementById("message").disabled = !open;
        document.getElementById("send").disabled = !open;
      });
      client.addEventListener("close", (event) => {
        if (event.detail.code >= 4400 || event.detail.code === 1008) status.textContent = "refused: " + event.detail.reason;
      });
      client.addEventListener("message", (event) => {
        const frame = event.detail;
        if (frame.type === "error") show("(error: " + frame.detail + ")", "note"); else show(frame.message);
      });
      client.addEventListener("recovered", () => show("(reconnected; nothing was missed)", "note"));
      client.addEventListener("unrecoverable", () => show("(reconnected; some messages could not be recovered)", "note"));
      client.addEventListener("presence", (event) => {
        const frame = event.detail;
        if (frame.type === "presence") {
          members.clear();
          for (const member of frame.members) members.set(member.channel, member);
        } else if (frame.type === "join") {
          members.set(frame.channel, frame);
        } else {
          members.delete(frame.channel);
        }
        showPresence();
      });
      client.connect();
    }
    function send() {
      const input = document.getElementById("message");
      if (client && input.value) client.send({ message: input.value });
      input.value = "";
    }
    document.getElementById("join").onclick = join;
    document.getElementById("send").onclick = send;
    document.getElementById("message").onkeyup = (event) => { if (event.key === "Enter") send(); };
    if (new URLSearchParams(location.search).get("autojoin") !== "0") join();
    </script>
    </body>
    </html>
    """#
}
