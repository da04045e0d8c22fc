// Pages through a type's history with fhir-kit-client: reads {"baseUrl", "token",
// "resourceType"} on stdin; prints every page (typeHistory(), then nextPage() until there is
// no next link) as a list of entries {fullUrl, method, url, status}, plus each Bundle's type.
import { readFileSync } from 'node:fs';
import { Client } from 'fhir-kit-client';

const input = JSON.parse(readFileSync(0, 'utf8'));
const client = new Client({ baseUrl: input.baseUrl, bearerToken: input.token });
const pages = [];
let bundle = await client.typeHistory({ resourceType: input.resourceType });
while (bundle) {
  pages.push({
    type: bundle.type,
    entries: (bundle.entry ?? []).map((e) => ({
      fullUrl: e.fullUrl,
      method: e.request.method,
      url: e.request.url,
      status: e.response.status,
    })),
  });
  bundle = await client.nextPage({ bundle });
}
process.stdout.write(JSON.stringify(pages));
