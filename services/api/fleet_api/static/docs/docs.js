// The interactive reference of /openapi.json (Swagger UI, vendored: static/vendor/swagger-ui).
// No validator badge (it would call validator.swagger.io) and nothing from another origin.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#reference",
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
