// Live case updates: an EventSource on the gateway's SSE endpoint; reloads when the case changes state.
"use strict";
(function () {
  var box = document.getElementById("live");
  if (!box || !window.EventSource) { return; }
  var list = document.getElementById("timeline");
  var state = box.querySelector("[data-live-state]");
  var RELOAD = ["case_concluded", "supplement_requested", "supplement_round_opened", "case_supplemented",
                "case_accepted", "extension_decided", "case_withdrawn", "case_delivered", "task_deemed_approved",
                "special_procedure_started", "parent_result_received", "parent_notice_received"];
  var source = new EventSource(box.getAttribute("data-events"));
  var reloadTimer = null;

  source.addEventListener("mode", function (e) {
    var mode = JSON.parse(e.data).mode;
    state.textContent = box.getAttribute(mode === "poll" ? "data-msg-poll" : "data-msg-live");
    box.setAttribute("data-live", mode);
  });
  source.addEventListener("update", function (e) {
    var u = JSON.parse(e.data);
    var li = document.createElement("li");
    li.className = "fresh";
    var time = document.createElement("time");
    time.textContent = u.at;
    li.appendChild(time);
    li.appendChild(document.createTextNode(" " + u.summary));
    li.setAttribute("data-kind", u.kind);
    list.appendChild(li);
    if (RELOAD.indexOf(u.kind) >= 0 && reloadTimer === null) {
      // Let the services settle, then show the new state (decision, seal, supplement form).
      reloadTimer = window.setTimeout(function () {
        source.close();
        window.location.replace(window.location.pathname);  // drop one-off notices such as ?done=
      }, 1500);
    }
  });
  source.addEventListener("unavailable", function () {
    state.textContent = box.getAttribute("data-msg-off");
    source.close();
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) { state.textContent = box.getAttribute("data-msg-off"); }
  });
})();
