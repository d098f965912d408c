// "Go back and correct it" on an error page: the browser's own back keeps what the form held.
"use strict";
(function () {
  var link = document.getElementById("go-back");
  if (!link || window.history.length < 2) { return; }
  link.addEventListener("click", function (e) {
    e.preventDefault();
    window.history.back();
  });
})();
