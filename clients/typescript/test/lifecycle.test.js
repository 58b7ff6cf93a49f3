// Drives the live service through the client generated from openapi/openapi.json. Run it with
// `npm test` and CFL_BASE_URL and CFL_TOKEN set; scripts/contract-test.sh does both.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
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
async function documentHasPatch() {
  const document = JSON.parse(await readFile(new URL("../../../openapi/openapi.json", import.meta.url), "utf8"));
  return Boolean(document.paths?.["/v1/distributions/{id}"]?.patch);
}

test("create, read, update and delete", async (t) => {
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

  if (await documentHasPatch()) {
    const etag = read.response.headers.get("etag");
    assert.ok(etag, "GET returns an ETag");
    // NOTE: the cast lets this file type-check against documents without PATCH; once PATCH
    // is in every supported document the call can use the typed client directly.
    const untyped = /** @type {any} */ (client);
    const updated = await untyped.PATCH("/v1/distributions/{id}", {
      params: { path: { id } },
      headers: { "If-Match": etag },
      body: { comment: "updated by the typescript client" },
    });
    assert.equal(updated.response.status, 200);
    assert.equal(updated.data?.config?.comment, "updated by the typescript client");
  } else {
    t.diagnostic("the OpenAPI document has no PATCH /v1/distributions/{id}; the update step is skipped");
  }

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
