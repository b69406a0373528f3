// The filters' term trees (issue 36, item 11): an option's depth is written as leading
// no-break spaces in its label (two a level); drawn as a left padding instead, so a long
// label that wraps keeps its indentation on every line.
var dmcfuncs = window.dashMantineFunctions = window.dashMantineFunctions || {};
dmcfuncs.indentedOption = function ({option}) {
    const text = String(option.label || option.value || "");
    const lead = text.length - text.replace(/^\u00a0+/, "").length;
    return React.createElement("div", {className: "tree-option", style: {paddingLeft: (lead / 2) * 0.9 + "em"},
                                       "data-depth": String(lead / 2)}, text.slice(lead));
};
