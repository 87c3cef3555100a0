// The first page of the job list takes in jobs made elsewhere (another tab, a script on the API).
// Their pushed rows have no place on the page yet, so htmx reports them as "no target"; a row newer
// than one shown goes in its place by upload time, and one older than every row of a full page
// belongs to a later page and is left out.
document.addEventListener("htmx:oobErrorNoTarget", (event) => {
  const row = event.detail.content;
  const list = document.querySelector("[data-new-rows]");
  if (!list || !(row instanceof HTMLTableRowElement) || !row.id.startsWith("job-")) return;
  const body = list.querySelector("table.jobs tbody");
  const created = Number(row.dataset.created);
  const older = Array.from(body.rows).find((shown) => Number(shown.dataset.created) < created);
  if (older) {
    body.insertBefore(row, older);
  } else if (body.rows.length < Number(list.dataset.perPage)) {
    body.appendChild(row);
  } else {
    return;
  }
  list.querySelector("table.jobs").hidden = false;
  list.querySelector(".empty").hidden = true;
});
