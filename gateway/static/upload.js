// Uploads each chosen file at once with a progress bar; the form then carries only the digests.
"use strict";
(function () {
  var token = document.querySelector('meta[name="csrf-token"]');
  token = token ? token.getAttribute("content") : "";

  function setup(form) {
    var pending = 0;
    var url = form.getAttribute("data-upload-url");
    var matter = form.getAttribute("data-matter");
    var msg = function (name) { return form.getAttribute("data-msg-" + name) || name; };
    var formError = form.querySelector("[data-form-error]");

    function upload(input) {
      var code = input.getAttribute("data-material");
      var hidden = form.querySelector('[data-doc="' + code + '"]');
      var bar = form.querySelector('[data-progress="' + code + '"]');
      var status = form.querySelector('[data-status="' + code + '"]');
      var file = input.files && input.files[0];
      hidden.value = "";
      if (!file) { return; }
      var data = new FormData();
      data.append("matter_code", matter);
      data.append("material_code", code);
      data.append("file", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", token);
      xhr.responseType = "json";
      bar.hidden = false;
      bar.value = 0;
      status.className = "upload-status";
      status.textContent = msg("uploading");
      pending += 1;
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
      });
      xhr.addEventListener("loadend", function () {
        pending -= 1;
        var body = xhr.response || {};
        if (xhr.status === 201 && body.digest) {
          bar.value = 100;
          hidden.value = body.digest;
          input.removeAttribute("required");
          status.className = "upload-status ok";
          status.textContent = "✓ " + msg("done") + ": " + file.name;
          input.setAttribute("data-uploaded", body.digest);
        } else {
          bar.value = 0;
          status.className = "upload-status failed";
          status.textContent = msg("failed") + ": " + ((body.error && body.error.message) || xhr.status);
        }
      });
      xhr.send(data);
    }

    Array.prototype.forEach.call(form.querySelectorAll('input[type="file"][data-material]'), function (input) {
      input.addEventListener("change", function () { upload(input); });
    });
    form.addEventListener("submit", function (e) {
      if (pending > 0) {
        e.preventDefault();
        if (formError) { formError.textContent = msg("wait"); }
        return;
      }
      // Files already uploaded are not sent again: the hidden digest stands for them.
      Array.prototype.forEach.call(form.querySelectorAll("input[data-uploaded]"), function (input) {
        input.disabled = true;
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.upload-form[data-upload-url]"), setup);
})();
