// sigatlas.HtmlBlock (dashboard/views/components.py): one element whose inner HTML is the server's
// string (the ranking table, every label escaped there), drawn in the page's first render. Loaded
// before Dash's renderer, which finds the component as window.sigatlas.HtmlBlock.
window.sigatlas = Object.assign(window.sigatlas || {}, {
    HtmlBlock: function HtmlBlock(props) {
        return React.createElement("div", {
            id: props.id, className: props.className,
            dangerouslySetInnerHTML: {__html: typeof props.children === "string" ? props.children : ""},
        });
    },
});
