/// The demo chat page served at `/`: plain HTML and JavaScript, no build step.
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
      #status { color: #666; }
      input { font-size: 1rem; padding: .3rem; }
    </style>
    </head>
    <body>
    <h1>swift-channels chat</h1>
    <p>Room <input id="room" value="lobby" size="12"> <button id="join">Join</button> <span id="status">not connected</span></p>
    <div id="log"></div>
    <p><input id="message" size="40" placeholder="Say something" disabled> <button id="send" disabled>Send</button></p>
    <script>
    let socket = null;
    const log = document.getElementById("log");
    const status = document.getElementById("status");
    function show(text) {
      const line = document.createElement("div");
      line.className = "message";
      line.textContent = text;
      log.appendChild(line);
      log.scrollTop = log.scrollHeight;
    }
    function join() {
      if (socket) socket.close();
      const room = encodeURIComponent(document.getElementById("room").value || "lobby");
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${room}/`);
      status.textContent = "connecting";
      socket.onopen = () => {
        status.textContent = "connected to " + room;
        document.getElementById("message").disabled = false;
        document.getElementById("send").disabled = false;
      };
      socket.onmessage = (event) => {
        const data = JSON.parse(event.data);
        if (data.type === "error") show("(error: " + data.detail + ")"); else show(data.message);
      };
      socket.onclose = (event) => {
        status.textContent = "closed (" + event.code + ")";
        document.getElementById("message").disabled = true;
        document.getElementById("send").disabled = true;
        // 1001: the node is draining; reconnect and the load balancer picks another one.
        if (event.code === 1001) setTimeout(join, 500 + Math.random() * 1000);
      };
    }
    function send() {
      const input = document.getElementById("message");
      if (socket && input.value) socket.send(JSON.stringify({ message: input.value }));
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
