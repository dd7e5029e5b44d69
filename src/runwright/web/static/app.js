/* runwright's web UI: small vanilla JS over the JSON API. Every action calls the API
   with the session's CSRF token and shows the API's own error message when refused. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

  // -- notices -------------------------------------------------------------------------
  function notice(text, tone) {
    const box = $("#notice");
    if (!box) { window.alert(text); return; }
    box.className = "notice notice--" + (tone || "bad");
    $(".notice__text", box).textContent = text;
    box.hidden = false;
    if (tone === "ok") { setTimeout(() => { box.hidden = true; }, 6000); }
    box.scrollIntoView({ block: "nearest" });
  }
  function flash(text) { sessionStorage.setItem("rw-flash", text); }
  function showFlash() {
    const text = sessionStorage.getItem("rw-flash");
    if (text) { sessionStorage.removeItem("rw-flash"); notice(text, "ok"); }
  }

  // -- the API ---------------------------------------------------------------------------
  async function messageOf(response) {
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    if (data && typeof data === "object") {
      if (typeof data.error === "string") return data.error;
      if (typeof data.message === "string") return data.message;
      if (typeof data.detail === "string") return data.detail;
      if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg || String(d)).join("; ");
    }
    if (response.status === 401) return "Your session has ended; reload the page to sign in again.";
    if (response.status === 403) return "You may not do this with your role; ask an admin.";
    return "The server answered " + response.status + " " + response.statusText + "; try again, or look at the server log.";
  }

  // contentType: send body as it is (a file's text) with that type.
  async function api(method, url, body, contentType) {
    const options = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf(), Accept: "application/json" } };
    if (contentType) {
      options.headers["Content-Type"] = contentType;
      options.body = body;
    } else if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (_) {
      throw new Error("The server cannot be reached; check that it is running, then try again.");
    }
    if (!response.ok) throw new Error(await messageOf(response));
    return response.status === 204 ? null : response.json();
  }

  function busy(button, on) {
    if (!button) return;
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  function formError(form, text) {
    const box = $(".form-error", form);
    if (!box) { notice(text); return; }
    box.textContent = text || "";
    box.hidden = !text;
  }

  // -- live parts ------------------------------------------------------------------------
  function refresh(element) {
    const url = element && element.getAttribute("hx-get");
    if (!url) return Promise.resolve();
    if (window.htmx) {
      return window.htmx.ajax("GET", url, { target: element, swap: "outerHTML" });
    }
    return fetch(url, { credentials: "same-origin" }).then((r) => (r.ok ? r.text() : null)).then((html) => {
      if (html === null || !element.isConnected) return;
      const holder = document.createElement("div");
      holder.innerHTML = html.trim();
      const fresh = holder.firstElementChild;
      if (fresh) { element.replaceWith(fresh); localTimes(fresh); }
    });
  }
  function refreshRun() {
    const live = $("#run-live");
    if (live) {
      if (!live.getAttribute("hx-get")) live.setAttribute("hx-get", location.pathname.replace(/\/$/, "") + "/live");
      return refresh(live);
    }
    return Promise.resolve();
  }

  // Without htmx the polling parts are refreshed here, a little slower.
  function fallbackPolling() {
    if (window.htmx) return;
    setInterval(() => {
      $$("[data-poll][hx-get]").forEach((element) => refresh(element));
    }, 3000);
  }

  // -- times ---------------------------------------------------------------------------
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  function localTimes(root) {
    $$("time[datetime]:not([data-relative])", root).forEach((element) => {
      const date = new Date(element.getAttribute("datetime"));
      if (!isNaN(date)) element.textContent = dateFormat.format(date);
    });
  }

  // -- buttons that call the API -----------------------------------------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    event.preventDefault();
    const question = button.dataset.confirm;
    if (question && !window.confirm(question)) return;
    busy(button, true);
    try {
      const answer = await api(button.dataset.method || "POST", button.dataset.url);
      const action = button.dataset.action;
      if (action === "retry" && answer && answer.id) {
        flash("Run #" + answer.id + " started as a retry.");
        location.assign("/runs/" + answer.id);
        return;
      }
      if (action === "cancel") {
        notice("Cancel requested: a running run stops within one heartbeat.", "ok");
        await refreshRun();
        return;
      }
      if (action === "resume") {
        notice("Resumed: the run is queued again from its first unfinished step.", "ok");
        location.reload();
        return;
      }
      if (button.dataset.done) flash(button.dataset.done);
      if (button.dataset.then) location.assign(button.dataset.then); else location.reload();
    } catch (error) {
      notice(error.message);
      busy(button, false);
    }
  });

  // -- dialogs -----------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog && dialog.showModal) dialog.showModal();
    }
    const closer = event.target.closest("[data-close-dialog]");
    if (closer) closer.closest("dialog").close();
  });

  // -- the run form --------------------------------------------------------------------------
  function splitArgs(text) {
    const out = [];
    const pattern = /"((?:\\.|[^"\\])*)"|'([^']*)'|(\S+)/g;
    let match;
    while ((match = pattern.exec(text)) !== null) {
      out.push(match[1] !== undefined ? match[1].replace(/\\(.)/g, "$1") : match[2] !== undefined ? match[2] : match[3]);
    }
    return out;
  }
  function offsetOf(date) {
    const minutes = -date.getTimezoneOffset();
    const sign = minutes >= 0 ? "+" : "-";
    const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
    return sign + pad(minutes / 60) + ":" + pad(minutes % 60);
  }
  function paramValue(input) {
    const value = input.value.trim();
    if (value === "") return undefined;
    if (input.dataset.type === "datetime") {
      const full = value.length === 16 ? value + ":00" : value;
      return full + offsetOf(new Date(full));
    }
    return value; // the server converts text to the declared type and names any mismatch
  }
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("[data-run-form]");
    if (!form) return;
    event.preventDefault();
    const body = { params: {} };
    $$("[data-param]", form).forEach((input) => {
      const value = paramValue(input);
      if (value !== undefined) body.params[input.dataset.param] = value;
    });
    const environment = form.elements.environment;
    if (environment && environment.value) body.environment = environment.value;
    const args = form.elements.args;
    if (args && args.value.trim()) body.args = splitArgs(args.value);
    const button = $('button[type="submit"]', form);
    busy(button, true);
    formError(form, "");
    try {
      const run = await api("POST", form.dataset.url, body);
      flash("Run #" + run.id + " started.");
      location.assign("/runs/" + run.id);
    } catch (error) {
      formError(form, error.message);
      busy(button, false);
    }
  });

  // -- script upload ------------------------------------------------------------------------
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("[data-upload-form]");
    if (!form) return;
    event.preventDefault();
    const data = new FormData(form);
    ["description", "job"].forEach((name) => { if (!String(data.get(name) || "").trim()) data.delete(name); });
    const file = data.get("file");
    if (!file || !file.name) { formError(form, "Choose a .py file to upload first."); return; }
    const button = $('button[type="submit"]', form);
    busy(button, true);
    formError(form, "");
    try {
      const deployed = await api("POST", form.dataset.url, data);
      flash(deployed.created
        ? deployed.job.name + " v" + deployed.package.version + " uploaded. Run it with ▶ Run…"
        : "This content is already " + deployed.job.name + " v" + deployed.package.version + "; it is current again.");
      location.reload();
    } catch (error) {
      formError(form, error.message);
      busy(button, false);
    }
  });

  // -- the code editor ------------------------------------------------------------------------
  function setUpEditor() {
    const form = $("[data-code-form]");
    if (!form) return;
    const textarea = $("[data-editor]", form);
    let editor = null;
    if (window.CodeMirror && textarea) {
      editor = window.CodeMirror.fromTextArea(textarea, {
        mode: textarea.dataset.mode,
        lineNumbers: true,
        indentUnit: 4,
        tabSize: 4,
        indentWithTabs: false,
        readOnly: textarea.readOnly,
        viewportMargin: 50,
        extraKeys: { Tab: (cm) => cm.replaceSelection("    ") },
      });
      form.codeMirror = editor;
    }
    const save = async () => {
      const path = form.elements.path.value.trim();
      const text = editor ? editor.getValue() : textarea.value;
      const message = form.elements.message ? form.elements.message.value : "";
      const button = $('button[type="submit"]', form);
      busy(button, true);
      formError(form, "");
      try {
        const saved = await api("PUT", form.dataset.url, { files: { [path]: text }, message });
        flash(saved.created
          ? "Saved as v" + saved.package.version + "; new runs use it."
          : "No change: this is the same as v" + saved.package.version + ", which is current.");
        location.assign("/jobs/" + encodeURIComponent(form.dataset.job) + "?tab=code&file=" + encodeURIComponent(path));
      } catch (error) {
        formError(form, error.message);
        busy(button, false);
      }
    };
    form.addEventListener("submit", (event) => { event.preventDefault(); save(); });
    form.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "s") { event.preventDefault(); save(); }
    });
  }

  // -- the job context -----------------------------------------------------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-context-refresh]");
    if (!button) return;
    const holder = button.closest("[data-url]");
    busy(button, true);
    try {
      const context = await api("GET", holder.dataset.url);
      $("[data-context-body]", holder).textContent = JSON.stringify(context, null, 2);
    } catch (error) {
      $("[data-context-body]", holder).textContent = error.message;
    } finally {
      busy(button, false);
    }
  });

  // -- the live console ----------------------------------------------------------------------
  const MAX_LINES = 20000;
  const FINAL = ["completed", "failed", "canceled"];
  function setUpConsole() {
    const box = $("#console");
    if (!box || !window.EventSource) return;
    const screen = $("[data-console-screen]", box);
    const lines = $("[data-console-lines]", box);
    const jump = $("[data-console-jump]", box);
    const counter = $("[data-console-count]", box);
    const state = $("[data-console-state]", box);
    const level = $("[data-console-level]", box);
    const wrap = $("[data-console-wrap]", box);
    const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    let count = 0;
    let follow = true;
    let pending = [];
    let scheduled = false;

    const atEnd = () => screen.scrollHeight - screen.scrollTop - screen.clientHeight < 24;
    screen.addEventListener("scroll", () => {
      follow = atEnd();
      jump.hidden = follow;
    });
    jump.addEventListener("click", () => {
      follow = true;
      jump.hidden = true;
      screen.scrollTop = screen.scrollHeight;
    });
    level.addEventListener("change", () => {
      box.dataset.min = level.value;
      if (follow) screen.scrollTop = screen.scrollHeight;
    });
    wrap.addEventListener("change", () => box.classList.toggle("console--nowrap", !wrap.checked));

    function lineElement(data) {
      const row = document.createElement("span");
      row.className = "l l--" + (data.level || "info") + (data.stream === "stderr" ? " l--stderr" : "");
      const stamp = document.createElement("span");
      stamp.className = "t";
      const when = new Date(data.ts);
      stamp.textContent = (isNaN(when) ? "" : timeFormat.format(when)) + " ";
      row.appendChild(stamp);
      const where = [data.step, data.target].filter(Boolean).join("·");
      if (where) {
        const tag = document.createElement("span");
        tag.className = "s";
        tag.textContent = "[" + where + "] ";
        row.appendChild(tag);
      }
      row.appendChild(document.createTextNode(data.message));
      return row;
    }
    function meta(text) {
      const row = document.createElement("span");
      row.className = "l l--meta";
      row.textContent = "— " + text;
      pending.push(row);
      schedule();
    }
    // Lines arrive in bursts: they are added once per frame, not one by one.
    function schedule() {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        const fragment = document.createDocumentFragment();
        pending.forEach((row) => fragment.appendChild(row));
        pending = [];
        lines.appendChild(fragment);
        while (lines.childElementCount > MAX_LINES) lines.firstElementChild.remove();
        counter.textContent = count + (count === 1 ? " line" : " lines");
        if (follow) screen.scrollTop = screen.scrollHeight;
      });
    }

    const source = new EventSource(box.dataset.events);
    source.addEventListener("open", () => {
      state.textContent = "live";
      state.className = "console__state console__state--live";
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) return;
      state.textContent = "reconnecting…";
      state.className = "console__state";
    });
    source.addEventListener("log", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      count += 1;
      pending.push(lineElement(data));
      schedule();
    });
    source.addEventListener("started", () => refreshRun());
    source.addEventListener("progress", () => {
      if (!window.htmx) refreshRun();
    });
    FINAL.forEach((name) => source.addEventListener(name, (event) => {
      // The server ends the stream after the final event; without close() the browser
      // would reconnect and replay it.
      source.close();
      let data = {};
      try { data = JSON.parse(event.data); } catch (_) { /* keep {} */ }
      meta("run " + (data.status || name) + (data.outcome ? " (" + data.outcome + ")" : "") +
        (data.duration != null ? " after " + data.duration.toFixed(1) + " s" : ""));
      state.textContent = "finished";
      state.className = "console__state";
      refreshRun();
      const context = $("[data-context-refresh]");
      if (context) context.click(); // the context saved by the last step
    }));
  }

  // -- start -------------------------------------------------------------------------------
  function start() {
    const toggle = $(".nav-toggle");
    const nav = $("#nav");
    if (toggle && nav) {
      toggle.addEventListener("click", () => {
        const open = nav.classList.toggle("nav--open");
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }
    const close = $(".notice__close");
    if (close) close.addEventListener("click", () => { $("#notice").hidden = true; });
    localTimes(document);
    showFlash();
    setUpEditor();
    setUpConsole();
    fallbackPolling();
    const dialog = $("dialog[data-open-on-load]");
    if (dialog && dialog.showModal) dialog.showModal();
  }
  document.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));
  // A poll after the session ended is redirected to the sign-in page: that page must
  // not be swapped into the fragment.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr && xhr.responseURL && new URL(xhr.responseURL).pathname.startsWith("/login")) {
      event.detail.shouldSwap = false;
      notice("Your session has ended; reload the page to sign in again.");
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 401 || status === 303) notice("Your session has ended; reload the page to sign in again.");
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
  window.runwright = { api, notice, flash, busy, formError, localTimes };
})();
