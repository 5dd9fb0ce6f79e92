// Tell RequireJS where the vendored ipywidgets HTML manager lives (_static/vendor/jupyter-widgets/),
// before embed-amd.js loads. Each module bundled in embed-amd.js looks for its icon fonts in the
// folder of its own RequireJS URL, which by default is "<page folder>/@jupyter-widgets/...": a
// folder that does not exist. Loaded by _config.yml (nb_ipywidgets_js) between require.js and
// embed-amd.js.
(function () {
  var vendor = new URL("vendor/jupyter-widgets", document.currentScript.src).href;
  require.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": vendor,  // .../dist/libembed-amd -> vendor/libembed-amd
      "@jupyter-widgets": vendor,                    // base, controls, html-manager -> vendor/<name>
    },
  });
})();
