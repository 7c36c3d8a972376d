/**
 * Downloaded SAE files kept in the browser's Cache Storage, so a reload reads them from disk
 * instead of downloading 400–800 MB again. The body is teed: one branch is written to the
 * cache while the other streams into the GPU, so caching costs no extra pass. A download that
 * fails or is aborted leaves no entry (cache.put rejects on a broken stream). Outside browsers
 * (no `caches` global) this is a plain fetch.
 */

export const CACHE_NAME = 'loupe-sae-v1';

export async function cachedFetch(url: string, fetchIt: (url: string) => Promise<Response>, enabled: boolean): Promise<Response> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!enabled || storage === undefined) return fetchIt(url);
  let cache: Cache;
  try {
    cache = await storage.open(CACHE_NAME);
  } catch {
    return fetchIt(url); // e.g. an opaque origin or private mode without storage
  }
  const hit = await cache.match(url);
  if (hit !== undefined) return hit;
  const res = await fetchIt(url);
  if (res.status !== 200 || res.body === null) return res;
  const [toCache, toCaller] = res.body.tee();
  cache.put(url, new Response(toCache, { headers: res.headers })).catch(() => {
    // Quota exceeded or the download broke: the load itself reports its own errors.
  });
  return new Response(toCaller, { status: res.status, statusText: res.statusText, headers: res.headers });
}
