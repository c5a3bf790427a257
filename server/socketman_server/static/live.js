// Live parts of a page: every element with data-live="URL" is fetched again
// every 2 s and swapped in. Checked boxes survive the swap. No inline script
// anywhere: the Content-Security-Policy allows only files of this server.
(function () {
  function refresh(el) {
    fetch(el.dataset.live, {cache: "no-store"}).then(function (r) {
      // The session ended (logout elsewhere, expiry): the page itself then
      // goes to the login form instead of swapping a refusal in.
      if (r.status === 401) { window.location.reload(); }
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (html) {
      var checked = {};
      el.querySelectorAll("input[type=checkbox]:checked").forEach(function (c) { checked[c.value] = true; });
      el.innerHTML = html;
      el.querySelectorAll("input[type=checkbox]").forEach(function (c) { c.checked = !!checked[c.value]; });
      document.body.dataset.updated = String(Date.now());
    }).catch(function () { document.body.dataset.updated = "failed"; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-live]");
    setInterval(function () { live.forEach(refresh); }, 2000);
  });
  // "select all" ticks the boxes of the table it heads (the fleet page's
  // devices on this page, the rollout form's). Listened for on the document:
  // on the fleet page the table itself is swapped every 2 s.
  document.addEventListener("change", function (e) {
    var all = e.target;
    if (all.id !== "select-all") { return; }
    all.closest("table").querySelectorAll("tbody input[type=checkbox]").forEach(function (c) { c.checked = all.checked; });
  });
})();
