/// A board where every visitor's pointer shows as a dot on the others' screens.
public enum CursorPage {
    public static let html = #"""
        <!doctype html>
        <meta charset="utf-8">
        <title>Cursors</title>
        <style>body { margin: 0; height: 100vh; font: 14px system-ui; } .dot { position: absolute; width: 10px; height: 10px; border-radius: 5px; background: #c33; }</style>
        <p id="status">connecting…</p>
        <script>
          const board = new URLSearchParams(location.search).get("board") || "lobby";
          const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/cursors/${board}/`);
          socket.binaryType = "arraybuffer";
          const dots = new Map();
          socket.onopen = () => { document.getElementById("status").textContent = `board ${board}: move your pointer`; };
          socket.onclose = (event) => { document.getElementById("status").textContent = `closed ${event.code} ${event.reason}`; };
          document.onmousemove = (event) => {
            if (socket.readyState !== WebSocket.OPEN) return;
            const frame = new DataView(new ArrayBuffer(4));
            frame.setUint16(0, Math.min(event.clientX, 65535));
            frame.setUint16(2, Math.min(event.clientY, 65535));
            socket.send(frame.buffer);
          };
          socket.onmessage = (event) => {
            if (typeof event.data === "string") return;
            const view = new DataView(event.data);
            const id = [...new Uint8Array(event.data, 0, 8)].join(".");
            let dot = dots.get(id);
            if (!dot) { dot = document.body.appendChild(document.createElement("div")); dot.className = "dot"; dots.set(id, dot); }
            dot.style.left = view.getUint16(8) + "px";
            dot.style.top = view.getUint16(10) + "px";
          };
        </script>
        """#
}
