// The playground page: posts the /sora form and the buttons, and applies the server's live updates
// (server-sent events). No polling, no external resources.
"use strict";

const member = document.body.dataset.member;
const messages = document.getElementById("messages");

function fragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

function scrollDown() {
  messages.scrollTop = messages.scrollHeight;
}

function show(html) {
  messages.appendChild(fragment(html));
  scrollDown();
}

function putCard(html) {
  const card = fragment(html);
  const old = document.getElementById(card.id);
  if (!old) {
    messages.appendChild(card);
    scrollDown();
    return;
  }
  // Keep a playing video playing: only the parts around it are replaced.
  const oldVideo = old.querySelector("video");
  const newVideo = card.querySelector("video");
  if (oldVideo && newVideo && oldVideo.getAttribute("src") === newVideo.getAttribute("src")) {
    newVideo.replaceWith(oldVideo);
  }
  old.replaceWith(card);
}

async function post(url, body) {
  body.set("member", member);
  let answer;
  try {
    const response = await fetch(url, { method: "POST", body });
    answer = await response.json();
  } catch (error) {
    answer = { ok: false, html: null };
  }
  if (answer.html) {
    show(answer.html);
  } else if (!answer.ok) {
    show('<article class="msg ephemeral refusal"><div class="body"><p>The playground did not answer. Please try again.</p></div></article>');
  }
  return answer;
}

document.getElementById("sora").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const send = document.getElementById("send");
  send.disabled = true;
  try {
    const answer = await post("/sora", new FormData(form));
    if (answer.ok) {
      document.getElementById("prompt").value = "";
      document.getElementById("image").value = "";
    }
  } finally {
    send.disabled = false;
  }
});

document.getElementById("member").addEventListener("change", (event) => {
  window.location.assign("/?member=" + encodeURIComponent(event.target.value));
});

const dialog = document.getElementById("followup");
let pending = null;

messages.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  const job = button.dataset.job;
  if (action === "remix" || action === "continue") {
    const info = button.parentElement.dataset;
    pending = { action, job };
    document.getElementById("followup-title").textContent =
      (action === "remix" ? "Remix video #" : "Continue video #") + job;
    document.getElementById("followup-prompt").value = action === "remix" ? info.prompt : "";
    document.getElementById("followup-duration").value = info.seconds;
    document.getElementById("followup-size").value = info.size;
    dialog.showModal();
    return;
  }
  button.disabled = true;
  post(`/jobs/${job}/${action}`, new FormData()).finally(() => { button.disabled = false; });
});

document.getElementById("followup-close").addEventListener("click", () => dialog.close());
document.getElementById("followup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!pending) return;
  const { action, job } = pending;
  pending = null;
  const body = new FormData(event.target);
  dialog.close();
  post(`/jobs/${job}/${action}`, body);
});

// The cooldown counts down on the page's own clock; the server sends the moment it ends.
setInterval(() => {
  const cooldown = document.getElementById("cooldown");
  if (!cooldown || !cooldown.dataset.readyAt) return;
  const left = Math.ceil(Number(cooldown.dataset.readyAt) - Date.now() / 1000);
  cooldown.textContent = left > 0 ? `${left} s left` : "ready";
  if (left <= 0) delete cooldown.dataset.readyAt;
}, 500);

const events = new EventSource("/events?member=" + encodeURIComponent(member));
events.addEventListener("job", (event) => putCard(event.data));
events.addEventListener("panel", (event) => {
  document.getElementById("panel").replaceWith(fragment(event.data));
});
scrollDown();
