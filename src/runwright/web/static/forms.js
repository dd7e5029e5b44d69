/* runwright's forms for people and the inventory: users, tokens, targets, credentials,
   variables. Each form or button sends JSON to the API with the session's CSRF token
   (window.runwright.api from app.js) and shows the API's own message when refused.
   A secret the API returns once (a generated password, a token, a sign-in link) is
   shown from the answer and never stored: not in the page, not in sessionStorage. */
(function () {
  "use strict";

  const rw = window.runwright;
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  class Invalid extends Error {}

  // "{name} is saved." with values from the API's answer or what was sent.
  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, (whole, key) =>
      values && values[key] !== undefined && values[key] !== null ? String(values[key]) : whole);
  }

  // -- reading a form into the API's JSON ---------------------------------------------------
  function tags(text) {
    return text.split(/[,\s]+/).filter(Boolean);
  }
  function keyValues(text, label) {
    const out = {};
    text.split(/\r?\n/).forEach((line, index) => {
      if (!line.trim()) return;
      const at = line.indexOf("=");
      const key = at > 0 ? line.slice(0, at).trim() : "";
      if (!key) throw new Invalid(label + ", line " + (index + 1) + ": write it as key=value (for example rack=4).");
      const raw = line.slice(at + 1).trim();
      try { out[key] = JSON.parse(raw); } catch (_) { out[key] = raw; }
    });
    return out;
  }
  function switchOn(form, name) {
    const field = form.elements[name];
    return Boolean(field && field.checked);
  }
  function valueOf(form, field) {
    const type = field.dataset.type || "text";
    const label = field.dataset.label || field.name;
    if (field.type === "checkbox") return field.checked;
    const text = field.value;
    if (type === "secret") return text === "" ? undefined : text; // empty keeps the stored secret
    if (type === "tags") return tags(text);
    if (type === "kv") return keyValues(text, label);
    if (type === "nullable") return text.trim() === "" ? null : text.trim();
    if (type === "int") {
      if (text.trim() === "") return undefined;
      const number = Number(text);
      if (!Number.isInteger(number)) throw new Invalid(label + " must be a whole number, not " + JSON.stringify(text) + ".");
      return number;
    }
    if (type === "value") {
      if (field.dataset.requiredIf && text === "" && (switchOn(form, field.dataset.requiredIf) || (form.original || {})[field.dataset.requiredIf])) {
        throw new Invalid("Type the value: a sensitive value is never shown, so it has to be typed again to save the variable.");
      }
      if (!switchOn(form, field.dataset.jsonSwitch)) return text;
      try { return JSON.parse(text); } catch (error) {
        throw new Invalid("The value is not valid JSON (" + error.message + "): fix it, or untick “The value is JSON” to save it as text.");
      }
    }
    return text.trim();
  }
  function bodyOf(form) {
    const body = {};
    Array.from(form.elements).forEach((field) => {
      if (!field.name || field.disabled || field.dataset.ignore !== undefined || field.type === "file") return;
      if (field.type === "radio" && !field.checked) return;
      if (field.required && field.value.trim() === "") {
        const name = field.dataset.label || field.name.charAt(0).toUpperCase() + field.name.slice(1).replace(/_/g, " ");
        throw new Invalid(name + " is required: fill it in, then save again.");
      }
      const value = valueOf(form, field);
      if (value !== undefined) body[field.name] = value;
    });
    return body;
  }
  // "/api/targets/{name}": a field named in the URL goes there, not in the body.
  function urlOf(template, body) {
    return template.replace(/\{(\w+)\}/g, (_, key) => {
      const value = body[key];
      delete body[key];
      return encodeURIComponent(value === undefined || value === null ? "" : value);
    });
  }

  // -- the parts of a page that change, and secrets shown once ---------------------------------
  async function refreshParts() {
    const parts = $$("[data-part][id]");
    if (!parts.length) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      parts.forEach((part) => {
        const replacement = fresh.getElementById(part.id);
        if (replacement) { part.replaceWith(replacement); rw.localTimes(replacement); }
      });
    } catch (_) { /* the notice already says what happened; a reload shows the rest */ }
  }
  function reveal(title, value, note) {
    const box = $("[data-reveal]");
    if (!box) { window.prompt(title + " (shown once): " + note, value); return; }
    $("[data-reveal-title]", box).textContent = title;
    $("[data-reveal-value]", box).value = value;
    $("[data-reveal-note]", box).textContent = note;
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
    $("[data-reveal-value]", box).select();
  }
  function hideReveal(box) {
    $("[data-reveal-value]", box).value = "";
    box.hidden = true;
  }
  async function copy(input, button) {
    let done = false;
    try {
      await navigator.clipboard.writeText(input.value);
      done = true;
    } catch (_) {
      // Without a secure context (plain http on another host) the clipboard API is absent.
      input.select();
      try { done = document.execCommand("copy"); } catch (__) { done = false; }
    }
    const label = button.textContent;
    button.textContent = done ? "Copied" : "Select and copy it by hand";
    setTimeout(() => { button.textContent = label; }, 2500);
  }

  // What to do with a successful answer: show its secret once, or say so and reload.
  async function succeeded(source, answer, sent) {
    const values = Object.assign({}, sent, answer || {});
    const key = source.dataset.revealKey;
    if (key && answer && answer[key]) {
      reveal(fill(source.dataset.revealTitle, values), answer[key], fill(source.dataset.revealNote, values));
      if (source.tagName === "FORM") source.reset();
      await refreshParts();
      return;
    }
    if (source.dataset.done) rw.flash(fill(source.dataset.done, values));
    location.reload();
  }

  function errorBox(element) {
    const holder = element.closest("form") || element.closest("[data-row]");
    return holder ? $(".form-error", holder) : null;
  }
  function showError(element, text) {
    const box = errorBox(element);
    if (!box) { rw.notice(text); return; }
    box.textContent = text;
    box.hidden = !text;
    if (text) box.scrollIntoView({ block: "nearest" });
  }

  // -- forms -------------------------------------------------------------------------------
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api-form]");
    if (!form) return;
    event.preventDefault();
    const button = $('button[type="submit"]', form);
    showError(form, "");
    let body;
    try {
      body = bodyOf(form);
    } catch (error) {
      if (!(error instanceof Invalid)) throw error;
      showError(form, error.message);
      return;
    }
    const sent = Object.assign({}, body);
    rw.busy(button, true);
    try {
      const answer = await rw.api(form.dataset.method || "POST", urlOf(form.dataset.url, body), body);
      const dialog = form.closest("dialog");
      if (dialog && form.dataset.revealKey) dialog.close();
      await succeeded(form, answer, sent);
    } catch (error) {
      showError(form, error.message);
    } finally {
      rw.busy(button, false);
    }
  });

  // -- buttons and selects in table rows -------------------------------------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-call]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    showError(button, "");
    rw.busy(button, true);
    try {
      const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      const answer = await rw.api(button.dataset.method || "POST", button.dataset.url, body);
      await succeeded(button, answer, body || {});
    } catch (error) {
      showError(button, error.message);
    } finally {
      rw.busy(button, false);
    }
  });

  document.addEventListener("change", async (event) => {
    const select = event.target.closest("select[data-call-select]");
    if (!select) return;
    const previous = select.dataset.current;
    const value = select.value;
    if (value === previous) return;
    showError(select, "");
    select.disabled = true;
    try {
      await rw.api(select.dataset.method || "PATCH", select.dataset.url, { [select.dataset.field]: value });
      rw.flash(fill(select.dataset.done, { value }));
      location.reload();
    } catch (error) {
      select.value = previous; // the change was refused: show what is still true
      showError(select, error.message);
    } finally {
      select.disabled = false;
    }
  });

  // -- add and edit dialogs ------------------------------------------------------------------
  // data-when="field=value": shown, and its fields sent, only while that field has it.
  function applySwitches(form) {
    $$("[data-when]", form).forEach((part) => {
      const [name, wanted] = part.dataset.when.split("=");
      const field = form.elements[name];
      let current = "";
      if (field instanceof RadioNodeList) current = field.value;
      else if (field && field.type === "checkbox") current = field.checked ? "on" : "";
      else if (field) current = field.value;
      const editOnly = part.dataset.editOnly !== undefined && form.dataset.mode !== "edit";
      const show = current === wanted && !editOnly;
      part.hidden = !show;
      $$("input, textarea, select", part).forEach((input) => { input.disabled = !show; });
    });
  }
  function setField(form, name, value) {
    const field = form.elements[name];
    if (!field) return;
    if (field instanceof RadioNodeList) { field.value = String(value); return; }
    if (field.type === "checkbox") { field.checked = Boolean(value); return; }
    if (field.tagName === "SELECT" && value !== "" && !$$("option", field).some((o) => o.value === String(value))) {
      field.add(new Option(String(value), String(value)));
    }
    field.value = value === null || value === undefined ? "" : String(value);
  }
  function openForm(opener) {
    const dialog = document.getElementById(opener.dataset.openForm);
    const form = dialog && $("form[data-api-form]", dialog);
    if (!form) return;
    const edit = opener.dataset.mode === "edit";
    let values = {};
    try { values = JSON.parse(opener.dataset.values || "{}"); } catch (_) { values = {}; }
    // Options disabled by an earlier edit go first: reset() would skip them.
    $$("option", form).forEach((option) => { option.disabled = false; });
    form.reset();
    showError(form, "");
    form.dataset.mode = edit ? "edit" : "create";
    form.dataset.url = opener.dataset.url;
    form.dataset.method = opener.dataset.method;
    form.dataset.done = opener.dataset.done || "";
    form.original = values;
    $$("input, textarea, select", form).forEach((field) => {
      field.disabled = false;
      if (field.dataset.readonlyOnEdit !== undefined && field.tagName !== "SELECT") field.readOnly = edit;
    });
    Object.keys(values).forEach((name) => setField(form, name, values[name]));
    // A select cannot be read-only: on edit, its other choices are disabled instead.
    $$("select[data-readonly-on-edit]", form).forEach((select) => {
      if (edit) $$("option", select).forEach((option) => { option.disabled = option.value !== select.value; });
    });
    $$("[data-edit-only]:not([data-when])", form).forEach((part) => { part.hidden = !edit; });
    const title = $("[data-form-title]", form);
    if (title) title.textContent = opener.dataset.title || title.textContent;
    applySwitches(form);
    dialog.showModal();
    const first = $$("input:not([readonly]):not([disabled]):not([type=hidden]), textarea:not([readonly]):not([disabled])", form)[0];
    if (first) first.focus();
  }
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open-form]");
    if (opener) { event.preventDefault(); openForm(opener); return; }
    const copier = event.target.closest("[data-copy]");
    if (copier) { copy($("[data-reveal-value]", copier.closest("[data-reveal]")), copier); return; }
    const closer = event.target.closest("[data-reveal-close]");
    if (closer) hideReveal(closer.closest("[data-reveal]"));
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-switch]")) applySwitches(event.target.form);
  });
  // A dialog closed with Escape or Cancel keeps no typed secret.
  $$("dialog").forEach((dialog) => dialog.addEventListener("close", () => {
    $$('[data-type="secret"], [data-type="value"]', dialog).forEach((field) => { field.value = ""; });
  }));

  // -- importing targets ---------------------------------------------------------------------
  function contentTypeOf(file) {
    const name = file.name.toLowerCase();
    if (name.endsWith(".csv") || file.type === "text/csv") return "text/csv";
    if (name.endsWith(".json") || file.type === "application/json") return "application/json";
    return null;
  }
  const RESULT = { created: "ok", updated: "info", refused: "bad" };
  function showReport(form, report) {
    const box = $("[data-import-report]", form.parentElement);
    const rows = $("[data-import-rows]", box);
    rows.replaceChildren();
    report.rows.forEach((row) => {
      const line = document.createElement("tr");
      line.dataset.importRow = String(row.row);
      line.dataset.status = row.status;
      const cells = [String(row.row), row.name || "—", null, row.error ? (row.field ? row.field + ": " : "") + row.error : ""];
      cells.forEach((text, index) => {
        const cell = document.createElement("td");
        if (index === 0) cell.className = "num";
        if (index === 1) cell.className = "mono";
        if (text === null) {
          const badge = document.createElement("span");
          badge.className = "badge badge--" + (RESULT[row.status] || "muted");
          badge.textContent = (report.dry_run ? "would be " : "") + row.status;
          cell.appendChild(badge);
        } else {
          cell.textContent = text;
        }
        line.appendChild(cell);
      });
      rows.appendChild(line);
    });
    const counts = report.created + " created, " + report.updated + " updated, " + report.refused + " refused";
    let summary = report.dry_run
      ? "Checked, nothing stored (dry run): " + counts + ". Untick “Check only” and import to store them."
      : "Imported: " + counts + ".";
    if (report.refused) summary += " Fix the refused rows and import the file again: targets already stored are updated, not duplicated.";
    if (!report.rows.length) summary = "The file has no rows: add a line per target under the header, then import it again.";
    const text = $("[data-import-summary]", box);
    text.textContent = summary;
    text.className = "import-report__summary notice notice--" + (report.refused ? "warn" : "ok");
    box.hidden = false;
  }
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-import-form]");
    if (!form) return;
    event.preventDefault();
    showError(form, "");
    const file = form.elements.file.files[0];
    if (!file) { showError(form, "Choose a .csv or .json file first."); return; }
    const type = contentTypeOf(file);
    if (!type) { showError(form, file.name + " is neither .csv nor .json: export the inventory as CSV (with a header line) or a JSON list, then import that."); return; }
    const button = $('button[type="submit"]', form);
    rw.busy(button, true);
    try {
      const dryRun = form.elements.dry_run.checked;
      const url = form.dataset.url + (dryRun ? "?dry_run=true" : "");
      const report = await rw.api("POST", url, file, type);
      showReport(form, report);
      if (!dryRun && (report.created || report.updated)) await refreshParts();
    } catch (error) {
      showError(form, error.message);
    } finally {
      rw.busy(button, false);
    }
  });
})();
