// Drives the live service through the client generated from openapi/openapi.json. Run it with
// `npm test` and CFL_BASE_URL and CFL_TOKEN set; scripts/contract-test.sh does both.
import assert from "node:assert/strict";
import { test } from "node:test";

import createClient from "openapi-fetch";

/** @typedef {import("../schema.js").paths} paths */

const baseUrl = process.env.CFL_BASE_URL;
const token = process.env.CFL_TOKEN;
if (!baseUrl || !token) {
  throw new Error("set CFL_BASE_URL and CFL_TOKEN (scripts/contract-test.sh sets both)");
}

/** @type {import("openapi-fetch").Client<paths>} */
const client = createClient({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

/** Reports whether the committed document has PATCH on a distribution. */
test("create, read, update and delete", async () => {
  const created = await client.POST("/v1/distributions", {
    body: { origin: { domain_name: "origin.example.com" }, comment: "typescript client" },
  });
  assert.equal(created.response.status, 202);
  assert.ok(created.data, "the create response has a body");
  const id = created.data.id;
  assert.match(created.response.headers.get("location") ?? "", new RegExp(`/v1/distributions/${id}$`));

  const read = await client.GET("/v1/distributions/{id}", { params: { path: { id } } });
  assert.equal(read.response.status, 200);
  assert.equal(read.data?.id, id);
  assert.equal(read.data?.config.comment, "typescript client");

  const etag = read.response.headers.get("etag");
  assert.ok(etag, "GET returns an ETag");
  const updated = await client.PATCH("/v1/distributions/{id}", {
    params: { path: { id }, header: { "If-Match": etag } },
    body: { comment: "updated by the typescript client" },
  });
  assert.equal(updated.response.status, 202);
  assert.equal(updated.data?.config?.comment, "updated by the typescript client");

  const deleted = await client.DELETE("/v1/distributions/{id}", { params: { path: { id } } });
  assert.equal(deleted.response.status, 202);
  assert.equal(deleted.data?.id, id);

  // Deletion finishes in the background; the simulator the contract run uses deploys each
  // change in about a second, so a minute is ample.
  const deadline = Date.now() + 60_000;
  /** @type {string | undefined} */
  let status = deleted.data?.status;
  while (status !== "deleted") {
    assert.ok(Date.now() < deadline, `still ${status} after 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const polled = await client.GET("/v1/distributions/{id}", { params: { path: { id } } });
    assert.equal(polled.response.status, 200);
    status = polled.data?.status;
  }
});

test("unknown id is a problem document", async () => {
  const missing = await client.GET("/v1/distributions/{id}", {
    params: { path: { id: "00000000-0000-7000-8000-000000000000" } },
  });
  assert.equal(missing.response.status, 404);
  assert.equal(missing.response.headers.get("content-type"), "application/problem+json");
  assert.equal(missing.error?.type, "urn:cloudfront-lifecycle:problem:not-found");
});
