// Live updates of one org: Server-Sent Events from GET /orgs/{org}/watch, so an idle page
// costs the plane nothing but a keepalive. Two kinds of event: `fleet` (what the lists show
// changed: an instance's status, health or settings, a node's status or GPUs) and `readings`
// (agents reported new GPU readings; the plane says so at most every 10 s). A page that shows
// no readings (the instances list) subscribes with {readings: false} and is not woken by a
// fleet of reporting agents. Where the stream is not available (an older plane answers 404,
// a proxy cuts it), the page falls back to polling every 2 s, which with ETags is a 304 each
// time. Either way nothing runs while the tab is hidden; on return the pages re-read at once.

const POLL_MS = 2000;
const RETRY_STREAM_MS = 30000; // while polling, try the stream again this often

export function createLive(org, { eventSource = (url) => new EventSource(url) } = {}) {
  const url = `/api/v1/orgs/${encodeURIComponent(org)}/watch`;
  const listeners = new Map(); // listener -> wants readings too
  let source = null;
  let pollTimer = null;
  let retryTimer = null;
  let stopped = false;

  function notify(kind) {
    for (const [listener, readings] of [...listeners]) {
      if (kind !== "readings" || readings) listener();
    }
  }

  function openStream() {
    closeStream();
    source = eventSource(url);
    source.addEventListener("fleet", () => notify("fleet"));
    source.addEventListener("readings", () => notify("readings"));
    source.addEventListener("open", stopPolling);
    source.addEventListener("error", () => {
      // CONNECTING: EventSource retries by itself (a restarted plane, a dropped connection).
      // CLOSED: the answer was no stream at all (404, 401, 5xx); poll instead.
      if (source && source.readyState === EventSource.CLOSED) {
        closeStream();
        startPolling();
      }
    });
  }

  function closeStream() {
    if (source) source.close();
    source = null;
  }

  function startPolling() {
    if (pollTimer || stopped || document.hidden) return;
    pollTimer = setInterval(() => notify("poll"), POLL_MS);
    retryTimer = setTimeout(() => {
      if (!stopped && !document.hidden) openStream();
    }, RETRY_STREAM_MS);
  }

  function stopPolling() {
    clearInterval(pollTimer);
    clearTimeout(retryTimer);
    pollTimer = retryTimer = null;
  }

  function pause() {
    closeStream();
    stopPolling();
  }

  function resume() {
    if (stopped || listeners.size === 0 || document.hidden || source || pollTimer) return;
    openStream(); // its first event, sent on connect, makes every page re-read
  }

  function onVisibility() {
    if (document.hidden) pause();
    else resume();
  }
  document.addEventListener("visibilitychange", onVisibility);

  return {
    // fn runs on every change while subscribed (readings too, unless {readings: false}).
    // Calls never overlap: a change that comes while fn is still reading runs it once more
    // afterwards, not once per change.
    subscribe(fn, { readings = true } = {}) {
      let running = false;
      let again = false;
      const listener = async () => {
        if (running) {
          again = true;
          return;
        }
        running = true;
        try {
          do {
            again = false;
            await fn();
          } while (again && listeners.has(listener));
        } catch (error) {
          console.warn("live update failed:", error);
        } finally {
          running = false;
        }
      };
      listeners.set(listener, readings);
      resume();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) pause();
      };
    },
    close() {
      stopped = true;
      listeners.clear();
      pause();
      document.removeEventListener("visibilitychange", onVisibility);
    },
    get mode() {
      return source ? "stream" : pollTimer ? "polling" : "paused";
    },
  };
}
