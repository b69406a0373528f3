// A click on a disease's name in the ranking table (a cell of class "grp", written as HTML in
// one Markdown component, so no callback can see which cell) picks that disease in the forest
// plot's picker and brings the plot into view: the picker's own callback draws it.
document.addEventListener("click", function (event) {
    const cell = event.target.closest ? event.target.closest("#disease-table td.grp") : null;
    if (!cell || !window.dash_clientside || !window.dash_clientside.set_props) { return; }
    window.dash_clientside.set_props("forest-group", {value: cell.textContent});
    const section = document.getElementById("forest-section");
    if (section) { section.scrollIntoView({behavior: "smooth", block: "start"}); }
});
