// The API reference page: Swagger UI (served by this app from the swagger-ui-bundle-v2 package) over the
// app's own OpenAPI document. No validator badge: it would send the document to validator.swagger.io.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle !== "function") { return; }
  SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false
  });
})();
