// Siteward web UI: the little the pages need besides htmx. Loaded from this origin only
// (the Content-Security-Policy allows no inline script).
"use strict";

// The commit-confirm countdown in the banner.
function tickCountdowns() {
  for (const el of document.querySelectorAll("[data-deadline-ms]")) {
    const left = Math.max(0, Math.round((Number(el.dataset.deadlineMs) - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    const seconds = left % 60;
    el.textContent = minutes > 0 ? `${minutes} min ${seconds} s` : `${seconds} s`;
  }
}

// "Copy" buttons: data-copy names the element whose text goes to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(() => {
    button.textContent = "Copied";
  });
});

// Import: a chosen file's text goes into the textarea the form posts.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.matches || !input.matches("input[type=file][data-into]")) return;
  const target = document.getElementById(input.dataset.into);
  const file = input.files && input.files[0];
  if (!target || !file) return;
  file.text().then((text) => { target.value = text; });
});

// The log view keeps scrolling to the newest line unless the reader scrolled up.
document.addEventListener("htmx:beforeSwap", (event) => {
  const logs = document.getElementById("log-lines");
  if (logs && event.detail.target === logs) {
    logs.dataset.stick = String(logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8);
  }
});
document.addEventListener("htmx:afterSwap", (event) => {
  const logs = document.getElementById("log-lines");
  if (logs && event.detail.target === logs && logs.dataset.stick !== "false") {
    logs.scrollTop = logs.scrollHeight;
  }
});

document.addEventListener("DOMContentLoaded", () => {
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
});
