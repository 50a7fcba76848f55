// The ngx_do chat page: one WebSocket to /rooms/<room>?member=<name>.
// Every event from the room is a JSON envelope with a "type"; messages
// carry the room's sequence number.  After a drop the page reconnects with
// since=<the last seq it saw>, so the room replays exactly what it missed.
"use strict";

const $ = (id) => document.getElementById(id);
let ws = null;
let lastSeq = 0;
let wanted = null;      // {name, room} while the user wants to be connected
let retry = 0;
let timer = null;

function line(cls, parts) {
    const li = document.createElement("li");
    li.className = cls;
    for (const [c, text] of parts) {
        const span = document.createElement("span");
        if (c) span.className = c;
        span.textContent = text;
        li.appendChild(span);
    }
    $("log").appendChild(li);
    li.scrollIntoView({block: "end"});
}

let members = new Map();    // name -> connections under that name
let joinedOnce = false;

function showMembers(count) {
    const ul = $("members");
    ul.textContent = "";
    for (const m of [...members.keys()].sort()) {
        const li = document.createElement("li");
        li.textContent = m;
        ul.appendChild(li);
    }
    $("count").textContent = count;
}

function onEvent(ev) {
    switch (ev.type) {
    case "welcome":
        members = new Map();
        for (const m of ev.members) members.set(m, (members.get(m) || 0) + 1);
        showMembers(ev.count);
        break;
    case "message":
        if (ev.seq <= lastSeq) return;          // already shown
        lastSeq = ev.seq;
        line("message", [["seq", "#" + ev.seq], ["from", ev.from],
                         ["", ev.data]]);
        break;
    case "join":
        if (ev.member === wanted.name && !joinedOnce) {
            joinedOnce = true;             // our own join, already listed
            break;
        }
        members.set(ev.member, (members.get(ev.member) || 0) + 1);
        showMembers(ev.count);
        line("event", [["", ev.member + " joined"]]);
        break;
    case "leave":
        if ((members.get(ev.member) || 0) > 1) {
            members.set(ev.member, members.get(ev.member) - 1);
        } else {
            members.delete(ev.member);
        }
        showMembers(ev.count);
        line("event", [["", ev.member + " left"]]);
        break;
    case "reset":
        line("event", [["", "missed messages " + (ev.since + 1) + " to "
                            + (ev.first - 1) + " (older than the history)"]]);
        lastSeq = ev.first - 1;
        break;
    case "error":
        line("event", [["", "error: " + ev.error]]);
        break;
    }
}

function connect() {
    if (!wanted) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = proto + "//" + location.host + "/rooms/"
              + encodeURIComponent(wanted.room)
              + "?member=" + encodeURIComponent(wanted.name);
    if (lastSeq) url += "&since=" + lastSeq;
    joinedOnce = false;
    $("state").textContent = "connecting";
    ws = new WebSocket(url);
    ws.onopen = () => {
        retry = 0;
        $("state").textContent = "in " + wanted.room + " as " + wanted.name;
        $("text").disabled = false;
        $("text").focus();
    };
    ws.onmessage = (m) => {
        let ev;
        try { ev = JSON.parse(m.data); } catch (e) { return; }
        onEvent(ev);
    };
    ws.onclose = (c) => {
        $("text").disabled = true;
        ws = null;
        if (!wanted) return;
        // 1008: refused for good (bad name, room full); anything else:
        // come back, the room replays what was missed
        if (c.code === 1008) {
            $("state").textContent = "refused: " + (c.reason || c.code);
            wanted = null;
            return;
        }
        const wait = Math.min(10000, 250 * 2 ** retry++);
        $("state").textContent = "reconnecting (" + c.code + ")";
        timer = setTimeout(connect, wait);
    };
}

$("join").addEventListener("submit", (e) => {
    e.preventDefault();
    clearTimeout(timer);
    if (ws) { wanted = null; ws.close(1000); }
    $("log").textContent = "";
    lastSeq = 0;
    wanted = {name: $("name").value, room: $("room").value};
    connect();
});

$("send").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (!ws || ws.readyState !== WebSocket.OPEN || text === "") return;
    ws.send(text);
    $("text").value = "";
});
