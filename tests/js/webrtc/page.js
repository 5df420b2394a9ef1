// A WebRTC phone for sipbus's browser test, driven by webrtc_call.js.
//
// Query parameters: role (caller|callee), mode (sip, default; self-check:
// no SIP, the two pages exchange SDP through the driver), user, password,
// wss, domain, callee (the user the caller dials), seconds (how long the
// call lasts before stats are read), debug (1: JsSIP debug on the console).
//
// Every notable event is POSTed to /report as JSON {role, event, ...}.
// ICE is kept on loopback: candidates other than 127.0.0.0/8 are taken
// out of the SDP this page sends, so media never goes to another address.
(function () {
  'use strict';

  const params = new URLSearchParams(location.search);
  const role = params.get('role');
  const mode = params.get('mode') || 'sip';
  const user = params.get('user');
  const password = params.get('password');
  const wss = params.get('wss');
  const domain = params.get('domain');
  const calleeUser = params.get('callee');
  const seconds = Number(params.get('seconds') || '6');
  const CALLER_HANGUP_GRACE_MS = 2000;

  function setStatus(text) {
    document.getElementById('status').textContent = `${role}: ${text}`;
  }

  function report(event, extra) {
    const body = JSON.stringify(Object.assign({ role, event, t: Date.now() }, extra || {}));
    return fetch('/report', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      keepalive: true,
    }).catch(() => {});
  }

  window.addEventListener('error', (e) => {
    report('error', { message: String(e.message), source: e.filename || null, line: e.lineno || null });
  });
  window.addEventListener('unhandledrejection', (e) => {
    const reason = e.reason && e.reason.message ? e.reason.message : String(e.reason);
    report('error', { message: `unhandled rejection: ${reason}` });
  });

  // --- SDP helpers -------------------------------------------------------

  function isLoopbackAddress(address) {
    return /^127\./.test(address || '');
  }

  // a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
  function candidateAddress(line) {
    const fields = line.replace(/^a=/, '').replace(/^candidate:/, '').split(/\s+/);
    return fields[4];
  }

  function loopbackOnly(sdp) {
    const lines = sdp.split(/\r\n/);
    const kept = lines.filter((line) => !line.startsWith('a=candidate:') || isLoopbackAddress(candidateAddress(line)));
    return kept.join('\r\n');
  }

  function countCandidates(sdp) {
    return (sdp.match(/^a=candidate:/gm) || []).length;
  }

  function sdpFacts(sdp) {
    sdp = sdp || '';
    const m = /^m=audio \S+ (\S+)/m.exec(sdp);
    return {
      hasFingerprint: /^a=fingerprint:/m.test(sdp),
      proto: m ? m[1] : null,
      candidates: countCandidates(sdp),
    };
  }

  // --- stats --------------------------------------------------------------

  async function readStats(pc) {
    const stats = await pc.getStats();
    const out = {
      packetsSent: 0,
      bytesSent: 0,
      packetsReceived: 0,
      bytesReceived: 0,
      packetsLost: 0,
      codec: null,
      dtlsState: null,
      srtpCipher: null,
      localCandidate: null,
      remoteCandidate: null,
    };
    let codecId = null;
    stats.forEach((s) => {
      const kind = s.kind || s.mediaType;
      if (s.type === 'outbound-rtp' && kind === 'audio') {
        out.packetsSent += s.packetsSent || 0;
        out.bytesSent += s.bytesSent || 0;
        codecId = codecId || s.codecId;
      } else if (s.type === 'inbound-rtp' && kind === 'audio') {
        out.packetsReceived += s.packetsReceived || 0;
        out.bytesReceived += s.bytesReceived || 0;
        out.packetsLost += s.packetsLost || 0;
        codecId = s.codecId || codecId;
      } else if (s.type === 'transport') {
        out.dtlsState = s.dtlsState || out.dtlsState;
        out.srtpCipher = s.srtpCipher || out.srtpCipher;
        if (s.selectedCandidatePairId) {
          const pair = stats.get(s.selectedCandidatePairId);
          const local = pair && stats.get(pair.localCandidateId);
          const remote = pair && stats.get(pair.remoteCandidateId);
          if (local) out.localCandidate = `${local.address || local.ip}:${local.port}/${local.protocol} ${local.candidateType}`;
          if (remote) out.remoteCandidate = `${remote.address || remote.ip}:${remote.port}/${remote.protocol} ${remote.candidateType}`;
        }
      }
    });
    const codec = codecId && stats.get(codecId);
    if (codec) out.codec = codec.mimeType + (codec.clockRate ? `/${codec.clockRate}` : '');
    return out;
  }

  async function reportStats(pc, localSdp, remoteSdp) {
    const s = await readStats(pc);
    const local = sdpFacts(localSdp);
    const remote = sdpFacts(remoteSdp);
    const established = pc.connectionState === 'connected';
    report('stats', Object.assign({
      established,
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      localSdpHasFingerprint: local.hasFingerprint,
      remoteSdpHasFingerprint: remote.hasFingerprint,
      localProto: local.proto,
      remoteProto: remote.proto,
      localCandidates: local.candidates,
      remoteCandidates: remote.candidates,
    }, s));
    setStatus(`stats: sent ${s.packetsSent}, received ${s.packetsReceived}`);
    return s;
  }

  function watchPeerConnection(pc) {
    pc.addEventListener('connectionstatechange', () => {
      report('pc_state', { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState });
    });
  }

  // --- media --------------------------------------------------------------

  async function getMicrophone() {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    const track = stream.getAudioTracks()[0];
    report('media', {
      audioTracks: stream.getAudioTracks().length,
      label: track ? track.label : null,
      readyState: track ? track.readyState : null,
    });
    return stream;
  }

  // --- SIP mode (JsSIP over WebSocket to sipbus) --------------------------

  function startSip(stream) {
    if (params.get('debug')) JsSIP.debug.enable('JsSIP:*');
    else JsSIP.debug.disable();

    const socket = new JsSIP.WebSocketInterface(wss);
    const ua = new JsSIP.UA({
      sockets: [socket],
      uri: `sip:${user}@${domain}`,
      password,
      register: true,
      register_expires: 300,
      session_timers: false,
    });
    const pcConfig = { iceServers: [] };
    let everRegistered = false;
    let sessionStarted = false;

    ua.on('connected', () => report('connected'));
    ua.on('disconnected', (e) => report('disconnected', {
      code: e && e.code !== undefined ? e.code : null,
      reason: (e && e.reason) || null,
      registered: everRegistered,
    }));
    ua.on('registered', () => {
      const first = !everRegistered;
      everRegistered = true;
      setStatus('registered');
      if (first) report('registered');
      if (first && role === 'caller') call();
    });
    ua.on('unregistered', () => report('unregistered'));
    ua.on('registrationFailed', (e) => report('registration_failed', {
      cause: (e && e.cause) || null,
      status: e && e.response ? e.response.status_code : null,
    }));

    ua.on('newRTCSession', (e) => {
      const session = e.session;
      let localSdp = null;
      let loopbackSeen = false;

      session.on('sdp', (ev) => {
        if (ev.originator === 'local') {
          const before = countCandidates(ev.sdp);
          ev.sdp = loopbackOnly(ev.sdp);
          localSdp = ev.sdp;
          report('local_sdp', { type: ev.type, candidates: before, loopbackCandidates: countCandidates(ev.sdp) });
          if (countCandidates(ev.sdp) === 0) report('error', { message: 'no loopback ICE candidate gathered' });
        }
      });
      // JsSIP sends its SDP once ICE gathering completes; with a loopback
      // host candidate in hand there is nothing more to wait for.
      session.on('icecandidate', (ev) => {
        if (!loopbackSeen && isLoopbackAddress(candidateAddress(ev.candidate.candidate))) {
          loopbackSeen = true;
          setTimeout(ev.ready, 300);
        }
      });
      session.on('peerconnection', (ev) => watchPeerConnection(ev.peerconnection));
      session.on('progress', (ev) => report('progress', {
        status: ev && ev.response ? ev.response.status_code : null,
      }));
      session.on('accepted', () => report('accepted'));
      session.on('confirmed', () => {
        report('confirmed');
        setStatus('in call');
        setTimeout(async () => {
          try {
            const pc = session.connection;
            await reportStats(pc, localSdp, pc.remoteDescription ? pc.remoteDescription.sdp : null);
          } catch (error) {
            report('error', { message: `getStats: ${error.message || error}` });
          }
          if (role === 'caller') {
            setTimeout(() => {
              if (!session.isEnded()) session.terminate();
            }, CALLER_HANGUP_GRACE_MS);
          }
        }, seconds * 1000);
      });
      session.on('ended', (ev) => {
        report('ended', { originator: ev.originator, cause: ev.cause || null });
        setStatus('ended');
        ua.stop();
      });
      session.on('failed', (ev) => {
        report('call_failed', {
          originator: ev.originator,
          cause: ev.cause || null,
          status: ev.message && ev.message.status_code ? ev.message.status_code : null,
        });
        setStatus(`call failed: ${ev.cause}`);
      });

      if (e.originator === 'remote') {
        report('incoming', { from: e.request.from.uri.toString() });
        if (role !== 'callee' || sessionStarted) {
          session.terminate({ status_code: 486 });
          return;
        }
        sessionStarted = true;
        session.answer({
          mediaConstraints: { audio: true, video: false },
          mediaStream: stream,
          pcConfig,
        });
      }
    });

    function call() {
      if (sessionStarted) return;
      sessionStarted = true;
      const target = `sip:${calleeUser}@${domain}`;
      report('calling', { target });
      ua.call(target, {
        mediaConstraints: { audio: true, video: false },
        mediaStream: stream,
        pcConfig,
      });
    }

    ua.start();
  }

  // --- self-check mode (no SIP: SDP relayed by the driver) ----------------

  async function signal(to, message) {
    await fetch(`/signal?to=${encodeURIComponent(to)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(message),
    });
  }

  async function nextSignal() {
    for (;;) {
      const res = await fetch(`/signal?role=${encodeURIComponent(role)}`);
      const list = await res.json();
      if (list.length) return list[0];
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  function gatheringComplete(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
      pc.addEventListener('icecandidate', (ev) => {
        if (ev.candidate && isLoopbackAddress(candidateAddress(ev.candidate.candidate))) setTimeout(resolve, 300);
      });
    });
  }

  async function startSelfCheck(stream) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    watchPeerConnection(pc);
    stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    let remoteSdp;
    if (role === 'caller') {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc);
      await signal('callee', { type: 'offer', sdp: loopbackOnly(pc.localDescription.sdp) });
      const answer = await nextSignal();
      remoteSdp = answer.sdp;
      await pc.setRemoteDescription(answer);
    } else {
      report('ready');
      const offer = await nextSignal();
      remoteSdp = offer.sdp;
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheringComplete(pc);
      await signal('caller', { type: 'answer', sdp: loopbackOnly(pc.localDescription.sdp) });
    }
    const localSdp = loopbackOnly(pc.localDescription.sdp);
    report('local_sdp', { type: pc.localDescription.type, loopbackCandidates: countCandidates(localSdp) });
    await new Promise((resolve) => {
      if (pc.connectionState === 'connected') return resolve();
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'connected') resolve();
      });
    });
    report('confirmed');
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    await reportStats(pc, localSdp, remoteSdp);
    await new Promise((resolve) => setTimeout(resolve, CALLER_HANGUP_GRACE_MS));
    pc.close();
    report('ended', { originator: 'local', cause: 'self-check' });
  }

  // --- start --------------------------------------------------------------

  async function main() {
    report('loaded', {
      jssip: typeof JsSIP !== 'undefined' ? JsSIP.version : null,
      secureContext: window.isSecureContext,
      userAgent: navigator.userAgent,
    });
    setStatus('loaded');
    const stream = await getMicrophone();
    if (mode === 'self-check') await startSelfCheck(stream);
    else startSip(stream);
  }

  main().catch((error) => report('error', { message: error && error.message ? error.message : String(error) }));
})();
