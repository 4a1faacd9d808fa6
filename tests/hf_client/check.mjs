// Runs the real Hub client against voxd's cache: snapshotDownload must find every file already
// there (no file requests), and scanCacheDir must accept the layout without warnings.
// Usage: node check.mjs HUB_URL CACHE_DIR REPO [REVISION]
import { scanCacheDir, snapshotDownload } from "@huggingface/hub";

const [hubUrl, cacheDir, repo, revision = "main"] = process.argv.slice(2);
const fileRequests = [];
const countingFetch = async (url, init) => {
  const u = String(url);
  if (u.includes("/resolve/")) fileRequests.push(u);
  return fetch(url, init);
};
const folder = await snapshotDownload({ repo, revision, cacheDir, hubUrl, fetch: countingFetch });
const scan = await scanCacheDir(cacheDir);
console.log(JSON.stringify({
  folder,
  fileRequests,
  warnings: scan.warnings.map((w) => String(w)),
  repos: scan.repos.map((r) => ({
    id: r.id.name,
    files: r.filesCount,
    size: r.size,
    revisions: r.revisions.map((v) => ({ commit: v.commitOid, refs: v.refs, files: v.files.map((f) => f.path) })),
  })),
}));
