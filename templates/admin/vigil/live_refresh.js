  // Shared by the admin's live pages (included inside their script): polls panel.dataset.liveUrl every
  // second while the object's status is in ACTIVE, handing each JSON body to the page's own show(body).
  function refresh() {
    fetch(panel.dataset.liveUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body) { show(body); }
        if (!body || ACTIVE.indexOf(body.status) >= 0) { window.setTimeout(refresh, 1000); }
      })
      .catch(function () { window.setTimeout(refresh, 2000); });
  }
  refresh();
