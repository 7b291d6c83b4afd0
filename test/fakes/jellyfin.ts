import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { Buffer } from 'node:buffer';
import type { AddressInfo } from 'node:net';

// A stand-in for a Jellyfin server's Quick Connect API that answers as Jellyfin's own code does
// (/tmp/jellyfin-facts.md, checked against jellyfin/jellyfin v10.8.13, v10.9.11, v10.11.11 and
// master 12.0: QuickConnectController, QuickConnectManager, UserController, SessionController,
// AuthorizationContext, AuthService, CustomAuthenticationHandler, ExceptionMiddleware,
// SessionManager, UserManager.GetUserDto, JsonDefaults and its converters):
// - the `Authorization: MediaBrowser Client="..", Device="..", DeviceId="..", Version="..", Token=".."`
//   header is parsed like AuthorizationContext.GetParts (scheme case-insensitive; comma-separated
//   key=value; quotes stripped; values URL-decoded with WebUtility.UrlDecode; keys case-sensitive).
//   Not X-Emby-Authorization (legacy authorization is off by default). A token is also taken
//   from the `ApiKey` query parameter, as Jellyfin does. A valid token fills in a missing
//   Client/Device/DeviceId/Version from its device;
// - header values are decoded the way Kestrel does: ASCII, or else UTF-8; bytes that are not
//   valid UTF-8 (e.g. a raw Latin-1 "Ö") make Kestrel answer 400 with no body;
// - paths match case-insensitively, with or without one trailing slash (ASP.NET Core routing);
//   a known path with the wrong method is 405 with `Allow`; an unknown path is 404 with no body;
// - GET /QuickConnect/Enabled -> 200 true|false;
// - GET /System/Info/Public (anonymous) -> 200 PublicSystemInfo {LocalAddress, ServerName, Version,
//   ProductName "Jellyfin Server", OperatingSystem, Id, StartupWizardCompleted};
// - POST /QuickConnect/Initiate (10.9+; GET too in 10.8-10.11, GET only in 10.8): a missing or
//   empty DeviceId/Device/Client/Version -> 400 (checked first), disabled -> 401
//   "Quick connect is disabled", else 200 QuickConnectResult {Authenticated, Secret (64
//   uppercase hex), Code (6 digits), DeviceId, DeviceName, AppName, AppVersion, DateAdded};
// - GET /QuickConnect/Connect?secret= : no secret -> 400 validation problem; disabled -> 401
//   "Quick connect is disabled"; unknown/expired secret -> 404 "Unknown secret"; else 200 the
//   QuickConnectResult (Authenticated true once authorized). Secrets compare case-sensitively;
// - POST /QuickConnect/Authorize?code=&userId= [Authorize]: no/unknown token, or a token of a
//   disabled user -> 401 (no body); missing code or a bad Guid -> 400 validation problem; a
//   non-administrator naming another user -> 403; disabled -> 401 "Quick connect is disabled";
//   unknown/expired code -> 404; already authorized -> 500; an unknown user id -> 401 "Quick
//   connect is disabled" (Jellyfin's AuthenticationException lands in that catch). It does not
//   check the user's IsDisabled. 10.8 has no userId parameter: always the caller. Effects, as
//   AuthorizeRequest: DateAdded = now + 1 minute; any device of that user with the request's
//   DeviceId is logged out; a new access token (device) is made; the AuthenticationResult (a
//   snapshot of the user as of now) is kept under the secret; Authenticated = true;
// - POST /Users/AuthenticateWithQuickConnect {"Secret":".."}: not JSON (or no Content-Type) ->
//   415; empty or broken body, or a missing/empty Secret -> 400 validation problem; disabled ->
//   401; unknown, unauthorized or expired secret -> 404; else 200 AuthenticationResult. It does
//   not consume the secret. (Jellyfin would also accept "secret" in any case and a number for the
//   secret; this fake insists on `Secret` and reads numbers/booleans as their text like Jellyfin);
// - POST /Sessions/Logout [Authorize] -> 204 and the token is gone; a bad token or one of a
//   disabled user -> 401 (so a disabled user's token cannot be revoked this way);
// - expiry is lazy, as in ExpireRequests on each Quick Connect call: requests whose DateAdded is
//   older than `requestLifetimeMs`, authorized secrets older than that since authorization;
// - errors from exceptions are text/plain "Error processing request." (ExceptionMiddleware);
//   the string results ("Unknown secret", "Quick connect is disabled") are content-negotiated as
//   in Jellyfin, whose JSON formatters come before the string one: a JSON string
//   ("\"Unknown secret\"", application/json) unless Accept prefers text/plain;
// - JSON is written as Jellyfin's System.Text.Json does: PascalCase, nulls left out, Guids as 32
//   lowercase hex, non-ASCII and HTML-sensitive characters escaped (\u00E1, \u0027), dates with
//   7 fractional digits and Z (real Jellyfin trims trailing zeros unless the millisecond is 0;
//   this fake always picks a last digit that is not 0).
// Tests may sign someone in directly by adding a token to `tokens`.

export interface FakeJellyfinUser {
  /** 32 lowercase hex (a Guid in "N" format). */
  id: string;
  name: string;
  isAdministrator: boolean;
  isDisabled: boolean;
}

export const JELLYFIN_SERVER_ID = '3f9a6c1e2b7d4a58b0e4c9d1a7f2e605';

export const JELLYFIN_USERS: Record<string, FakeJellyfinUser> = {
  alice: { id: '4f1e0c7a2b3d4e5f8a9b0c1d2e3f4a5b', name: 'alice', isAdministrator: false, isDisabled: false },
  bob: { id: '9b2d7e41c0a34f8e9d6a5b3c2e1f0a98', name: 'bob', isAdministrator: false, isDisabled: false },
  admin: { id: 'c0ffee00d15c4a1e8b7f6e5d4c3b2a19', name: 'Jelly Admin', isAdministrator: true, isDisabled: false },
  // Disabled in Jellyfin's dashboard; an administrator can still authorize a Quick Connect code for her.
  dora: { id: '1d0ea5ed7c6b4b3a9a8f7e6d5c4b3a21', name: 'dora', isAdministrator: false, isDisabled: true },
  erik: { id: '5e7a2c9b8d1f4e3a8c6b5a4d3e2f1c07', name: 'Erik Östberg', isAdministrator: false, isDisabled: false },
  obrien: { id: '0b71e2d3c4a54f6e9b8a7c6d5e4f3a2b', name: "Seán O'Brien", isAdministrator: false, isDisabled: false },
  // A Jellyfin user name may contain '@' and '.': this one looks like someone else's address.
  mallory: { id: '7a11e5c3b2d14e0f8a9b6c5d4e3f2a1c', name: 'alice@example.com', isAdministrator: false, isDisabled: false },
};

/** When each user last signed in with a password (none for a user who only ever used Quick Connect). */
const LAST_LOGIN: Record<string, string> = {
  '4f1e0c7a2b3d4e5f8a9b0c1d2e3f4a5b': '2026-07-28T19:47:43.1852213Z',
  '9b2d7e41c0a34f8e9d6a5b3c2e1f0a98': '2026-06-02T08:12:09.5531847Z',
  c0ffee00d15c4a1e8b7f6e5d4c3b2a19: '2026-08-20T21:03:57.0094712Z',
  '1d0ea5ed7c6b4b3a9a8f7e6d5c4b3a21': '2025-12-24T17:30:00.4419183Z',
  '0b71e2d3c4a54f6e9b8a7c6d5e4f3a2b': '2026-03-14T09:26:53.5897931Z',
  '7a11e5c3b2d14e0f8a9b6c5d4e3f2a1c': '2026-08-01T00:00:01.0000003Z',
};

export type JellyfinFault = 'http-500' | 'hang' | 'garbage' | 'html' | 'reset';

interface QuickConnectRequest {
  secret: string;
  code: string;
  authenticated: boolean;
  deviceId: string;
  deviceName: string;
  appName: string;
  appVersion: string;
  dateAdded: number;
}

/** What AuthorizationContext makes of a request: the header's values, completed from a valid token's device. */
interface AuthorizationInfo {
  client?: string;
  device?: string;
  deviceId?: string;
  version?: string;
  token?: string;
  /** The token is a live device. */
  authenticated: boolean;
  user?: FakeJellyfinUser;
}

type QuickConnectFailure = 'disabled' | 'not-found' | 'already-authorized' | 'no-such-user';

class QuickConnectError extends Error {
  readonly kind: QuickConnectFailure;
  constructor(kind: QuickConnectFailure, message: string) {
    super(message);
    this.kind = kind;
  }
}

const ROUTES: Record<string, string> = {
  '/quickconnect/enabled': 'enabled',
  '/system/info/public': 'info',
  '/quickconnect/initiate': 'initiate',
  '/quickconnect/connect': 'connect',
  '/quickconnect/authorize': 'authorize',
  '/users/authenticatewithquickconnect': 'authenticate',
  '/sessions/logout': 'logout',
};

export class FakeJellyfin {
  url = '';
  quickConnectEnabled = true;
  /** '10.9' | '10.10' | '10.11' keep the legacy GET /QuickConnect/Initiate; '12' has only POST; '10.8' has only GET. Default '10.11'. */
  version: '10.8' | '10.9' | '10.10' | '10.11' | '12' = '10.11';
  requestLifetimeMs = 600_000;
  /** Faults by path prefix (matched against the path as sent), e.g. {'/QuickConnect/Connect': 'hang'}. */
  readonly faults = new Map<string, JellyfinFault>();
  /** Every request, in order. `query` is the raw query string without '?'; `authorization` the parsed MediaBrowser header. */
  readonly calls: { method: string; path: string; query: string; authorization?: Record<string, string>; body?: string }[] = [];
  /** Live access tokens (devices): token -> who and which DeviceId; removed by /Sessions/Logout. */
  readonly tokens = new Map<string, { userId: string; deviceId: string }>();
  /** The pending requests, by code (for assertions): secret, authenticated, deviceId, dateAdded. */
  readonly requests = new Map<string, QuickConnectRequest>();
  /** QuickConnectManager._authorizedSecrets: secret -> when it was authorized and the stored AuthenticationResult. */
  private readonly authorized = new Map<string, { at: number; result: object }>();
  /** The rest of each device's record. */
  private readonly devices = new Map<string, { appName: string; appVersion: string; deviceName: string }>();
  /** The sub-millisecond part (100 ns ticks) of each request's DateAdded. */
  private readonly ticks = new WeakMap<QuickConnectRequest, number>();
  private server: Server | undefined;
  private readonly hung = new Set<ServerResponse>();

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (res.headersSent) return void res.destroy();
        text(res, 500, 'Error processing request.');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** What a signed-in Jellyfin user does in Jellyfin's UI (profile -> Quick Connect -> enter code): authorize `code` as `username` (a key of JELLYFIN_USERS). Same semantics as POST /QuickConnect/Authorize: throws for an unknown/expired code or one already authorized. */
  authorize(code: string, username: string): void {
    const user = JELLYFIN_USERS[username];
    if (!user) throw new Error(`no Jellyfin user ${JSON.stringify(username)} in JELLYFIN_USERS`);
    this.authorizeRequest(user.id, code);
  }

  /** Make the pending request with this code expire now (as if 10 minutes had passed): it, and its authorized secret if any, are dropped by the next Quick Connect call, as Jellyfin expires lazily. */
  expire(code: string): void {
    const request = this.requests.get(code);
    if (!request) return;
    const past = Date.now() - this.requestLifetimeMs - 1;
    request.dateAdded = past;
    const authorized = this.authorized.get(request.secret);
    if (authorized) authorized.at = past;
  }

  // QuickConnectManager.ExpireRequests
  private expireRequests(): void {
    const minTime = Date.now() - this.requestLifetimeMs;
    for (const [code, request] of this.requests) if (request.dateAdded < minTime) this.requests.delete(code);
    for (const [secret, { at }] of this.authorized) if (at < minTime) this.authorized.delete(secret);
  }

  // QuickConnectManager.AuthorizeRequest with SessionManager.AuthenticateDirect
  private authorizeRequest(userId: string, code: string): void {
    if (!this.quickConnectEnabled) throw new QuickConnectError('disabled', 'Quick connect is not active on this server');
    this.expireRequests();
    const request = this.requests.get(code);
    if (!request) throw new QuickConnectError('not-found', `Unable to find request ${code}`);
    if (request.authenticated) throw new QuickConnectError('already-authorized', `Request ${code} is already authorized`);
    // "It can't expire immediately as otherwise some clients wouldn't ever see that they have been authenticated."
    request.dateAdded = Date.now() + 60_000;
    this.ticks.set(request, subMillisecondTicks());
    const user = Object.values(JELLYFIN_USERS).find((u) => u.id === userId);
    if (!user) throw new QuickConnectError('no-such-user', 'Invalid username or password entered.');
    // GetAuthorizationToken: log out any existing device of this user with the same DeviceId.
    for (const [token, device] of this.tokens) {
      if (device.userId === user.id && device.deviceId === request.deviceId) this.logout(token);
    }
    const token = randomBytes(16).toString('hex');
    this.tokens.set(token, { userId: user.id, deviceId: request.deviceId });
    this.devices.set(token, { appName: request.appName, appVersion: request.appVersion, deviceName: request.deviceName });
    const now = Date.now();
    this.authorized.set(request.secret, { at: now, result: authenticationResult(user, request, token, now) });
    request.authenticated = true;
  }

  private logout(token: string): void {
    this.tokens.delete(token);
    this.devices.delete(token);
  }

  private createRequest(info: AuthorizationInfo): QuickConnectRequest {
    let code: string;
    do code = String(randomInt(100_000, 1_000_000));
    while (this.requests.has(code));
    const request: QuickConnectRequest = {
      secret: randomBytes(32).toString('hex').toUpperCase(), code, authenticated: false,
      deviceId: info.deviceId!, deviceName: info.device!, appName: info.client!, appVersion: info.version!,
      dateAdded: Date.now(),
    };
    this.ticks.set(request, subMillisecondTicks());
    this.requests.set(code, request);
    return request;
  }

  private quickConnectResult(request: QuickConnectRequest): object {
    return {
      Authenticated: request.authenticated, Secret: request.secret, Code: request.code,
      DeviceId: request.deviceId, DeviceName: request.deviceName, AppName: request.appName, AppVersion: request.appVersion,
      DateAdded: jsonDate(request.dateAdded, this.ticks.get(request) ?? 1),
    };
  }

  // AuthorizationContext.GetAuthorizationInfoFromDictionary + AuthService.Authenticate
  private authorizationInfo(auth: Map<string, string> | undefined, url: URL): AuthorizationInfo {
    const info: AuthorizationInfo = {
      client: auth?.get('Client'), device: auth?.get('Device'), deviceId: auth?.get('DeviceId'),
      version: auth?.get('Version'), token: auth?.get('Token'), authenticated: false,
    };
    if (!info.token) info.token = queryValue(url, 'ApiKey');
    if (!info.token) return info;
    const device = this.tokens.get(info.token);
    if (!device) return info;
    const details = this.devices.get(info.token);
    info.authenticated = true;
    if (!info.client?.trim()) info.client = details?.appName;
    if (!info.deviceId?.trim()) info.deviceId = device.deviceId;
    if (!info.device?.trim()) info.device = details?.deviceName;
    if (!info.version?.trim()) info.version = details?.appVersion;
    info.user = Object.values(JELLYFIN_USERS).find((u) => u.id === device.userId);
    return info;
  }

  /** [Authorize]: the signed-in user, or undefined for a 401 (no token, unknown token, or a disabled user's). */
  private signedIn(info: AuthorizationInfo): FakeJellyfinUser | undefined {
    if (!info.authenticated || !info.user || info.user.isDisabled) return undefined;
    return info.user;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://jellyfin.invalid');
    const body = await readBody(req);
    const headers = decodeHeaders(req);
    const auth = parseAuthorization(headers?.get('authorization'));
    this.calls.push({
      method: req.method ?? '', path: url.pathname, query: url.search.replace(/^\?/, ''),
      ...(auth ? { authorization: Object.fromEntries(auth) } : {}),
      ...(body ? { body } : {}),
    });

    for (const [prefix, fault] of this.faults) {
      if (!url.pathname.startsWith(prefix)) continue;
      if (fault === 'hang') {
        this.hung.add(res);
        return;
      }
      if (fault === 'reset') return void req.socket.destroy();
      if (fault === 'http-500') return text(res, 500, 'Error processing request.');
      if (fault === 'garbage') {
        res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
        return void res.end('{"Secr');
      }
      if (fault === 'html') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        return void res.end('<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Sign in to continue</h1>'
          + '<form method="post" action="/login"><input name="username"><input name="password" type="password">'
          + '<button>Sign in</button></form></body></html>');
      }
    }

    // Kestrel: header values must be ASCII or valid UTF-8.
    if (!headers) {
      res.writeHead(400, { 'Content-Length': '0', Connection: 'close' });
      return void res.end();
    }

    let path = url.pathname.toLowerCase();
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    const route = ROUTES[path];
    if (!route) return empty(res, 404);
    const allowed = route === 'initiate'
      ? [...(this.version !== '12' ? ['GET'] : []), ...(this.version !== '10.8' ? ['POST'] : [])]
      : [route === 'enabled' || route === 'connect' || route === 'info' ? 'GET' : 'POST'];
    if (!allowed.includes(req.method ?? '')) return empty(res, 405, { Allow: allowed.join(', ') });

    const info = this.authorizationInfo(auth, url);
    const accept = headers.get('accept');

    if (route === 'enabled') return json(res, 200, this.quickConnectEnabled);
    if (route === 'info') {
      const version = { '10.8': '10.8.13', '10.9': '10.9.11', '10.10': '10.10.7', '10.11': '10.11.8', '12': '12.0.0' }[this.version];
      return json(res, 200, { LocalAddress: this.url, ServerName: 'Family Media', Version: version, ProductName: 'Jellyfin Server', OperatingSystem: '', Id: 'f2f8f2a4e1c14a0bb1d9c1c0de0b2f11', StartupWizardCompleted: true });
    }

    if (route === 'initiate') {
      // TryConnect: ArgumentException.ThrowIfNullOrEmpty for each, before AssertActive.
      if (!info.deviceId || !info.device || !info.client || !info.version) return text(res, 400, 'Error processing request.');
      if (!this.quickConnectEnabled) return stringResult(res, accept, 401, 'Quick connect is disabled');
      this.expireRequests();
      return json(res, 200, this.quickConnectResult(this.createRequest(info)));
    }

    if (route === 'connect') {
      const secret = queryValue(url, 'secret');
      if (!secret?.trim()) return validationProblem(res, { secret: ['The secret field is required.'] });
      if (!this.quickConnectEnabled) return stringResult(res, accept, 401, 'Quick connect is disabled');
      this.expireRequests();
      const request = [...this.requests.values()].find((r) => r.secret === secret);
      if (!request) return stringResult(res, accept, 404, 'Unknown secret');
      return json(res, 200, this.quickConnectResult(request));
    }

    if (route === 'authorize') {
      const me = this.signedIn(info);
      if (!me) return empty(res, 401);
      const code = queryValue(url, 'code');
      const rawUserId = this.version === '10.8' ? undefined : queryValue(url, 'userId');
      const errors: Record<string, string[]> = {};
      if (!code?.trim()) errors.code = ['The code field is required.'];
      const userId = rawUserId ? parseGuid(rawUserId) : undefined;
      if (rawUserId && !userId) errors.userId = [`The value '${rawUserId}' is not valid.`];
      if (Object.keys(errors).length > 0 || !code) return validationProblem(res, errors);
      // RequestHelpers.GetUserId: none (or the empty Guid) means the caller; another user needs an administrator.
      let target = me.id;
      if (userId && userId !== '0'.repeat(32)) {
        if (userId !== me.id && !me.isAdministrator) return text(res, 403, 'Error processing request.');
        target = userId;
      }
      try {
        this.authorizeRequest(target, code);
      } catch (err) {
        if (!(err instanceof QuickConnectError)) throw err;
        if (err.kind === 'disabled' || err.kind === 'no-such-user') return stringResult(res, accept, 401, 'Quick connect is disabled');
        return text(res, err.kind === 'not-found' ? 404 : 500, 'Error processing request.');
      }
      return json(res, 200, true);
    }

    if (route === 'authenticate') {
      // [FromBody, Required] QuickConnectDto: the input formatter first, then validation.
      if (!isJsonMediaType(headers.get('content-type'))) return problem(res, 415, 'Unsupported Media Type', 'https://tools.ietf.org/html/rfc9110#section-15.5.16');
      const required = { request: ['The request field is required.'] };
      if (!body.trim()) return validationProblem(res, { '': ['A non-empty request body is required.'], ...required });
      let dto: unknown;
      try {
        dto = JSON.parse(body);
      } catch {
        return validationProblem(res, { $: ['The input does not contain any JSON tokens or is not valid JSON. Path: $ | LineNumber: 0 | BytePositionInLine: 0.'], ...required });
      }
      if (dto === null) return validationProblem(res, required);
      if (typeof dto !== 'object' || Array.isArray(dto)) {
        return validationProblem(res, { $: ['The JSON value could not be converted to Jellyfin.Api.Models.UserDtos.QuickConnectDto. Path: $ | LineNumber: 0 | BytePositionInLine: 1.'], ...required });
      }
      const raw = (dto as Record<string, unknown>).Secret;
      if (raw !== null && typeof raw === 'object') {
        return validationProblem(res, { '$.Secret': ['The JSON value could not be converted to System.String. Path: $.Secret | LineNumber: 0 | BytePositionInLine: 11.'], ...required });
      }
      // Jellyfin's JsonStringConverter reads a number or boolean as its JSON text.
      const secret = typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : undefined;
      if (!secret?.trim()) return validationProblem(res, { Secret: ['The Secret field is required.'] });
      // GetAuthorizedRequest: AssertActive (an uncaught AuthenticationException -> 401), then a ResourceNotFoundException -> 404.
      if (!this.quickConnectEnabled) return text(res, 401, 'Error processing request.');
      this.expireRequests();
      const authorized = this.authorized.get(secret);
      if (!authorized) return text(res, 404, 'Error processing request.');
      return json(res, 200, authorized.result);
    }

    // route === 'logout'
    if (!this.signedIn(info)) return empty(res, 401);
    this.logout(info.token!);
    return empty(res, 204);
  }
}

// ---- Jellyfin's data ----

function authenticationResult(user: FakeJellyfinUser, request: QuickConnectRequest, token: string, now: number): object {
  const when = jsonDate(now, subMillisecondTicks());
  return {
    User: {
      Name: user.name, ServerId: JELLYFIN_SERVER_ID, Id: user.id,
      HasPassword: true, HasConfiguredPassword: true, HasConfiguredEasyPassword: false, EnableAutoLogin: false,
      ...(LAST_LOGIN[user.id] ? { LastLoginDate: LAST_LOGIN[user.id] } : {}),
      LastActivityDate: when,
      Configuration: {
        AudioLanguagePreference: 'eng', PlayDefaultAudioTrack: true, SubtitleLanguagePreference: '', DisplayMissingEpisodes: false,
        GroupedFolders: [], SubtitleMode: 'Default', DisplayCollectionsView: false, EnableLocalPassword: false, OrderedViews: [],
        LatestItemsExcludes: [], MyMediaExcludes: [], HidePlayedInLatest: true, RememberAudioSelections: true,
        RememberSubtitleSelections: true, EnableNextEpisodeAutoPlay: true, CastReceiverId: 'F007D354',
      },
      Policy: {
        IsAdministrator: user.isAdministrator, IsHidden: false, EnableCollectionManagement: user.isAdministrator,
        EnableSubtitleManagement: user.isAdministrator, EnableLyricManagement: false, IsDisabled: user.isDisabled,
        BlockedTags: [], AllowedTags: [], EnableUserPreferenceAccess: true, AccessSchedules: [], BlockUnratedItems: [],
        EnableRemoteControlOfOtherUsers: user.isAdministrator, EnableSharedDeviceControl: true, EnableRemoteAccess: true,
        EnableLiveTvManagement: true, EnableLiveTvAccess: true, EnableMediaPlayback: true, EnableAudioPlaybackTranscoding: true,
        EnableVideoPlaybackTranscoding: true, EnablePlaybackRemuxing: true, ForceRemoteSourceTranscoding: false,
        EnableContentDeletion: user.isAdministrator, EnableContentDeletionFromFolders: [], EnableContentDownloading: true,
        EnableSyncTranscoding: true, EnableMediaConversion: true, EnabledDevices: [], EnableAllDevices: true, EnabledChannels: [],
        EnableAllChannels: true, EnabledFolders: [], EnableAllFolders: true, InvalidLoginAttemptCount: 0,
        LoginAttemptsBeforeLockout: -1, MaxActiveSessions: 0, EnablePublicSharing: true, BlockedMediaFolders: [],
        BlockedChannels: [], RemoteClientBitrateLimit: 0,
        AuthenticationProviderId: 'Jellyfin.Server.Implementations.Users.DefaultAuthenticationProvider',
        PasswordResetProviderId: 'Jellyfin.Server.Implementations.Users.DefaultPasswordResetProvider',
        SyncPlayAccess: 'CreateAndJoinGroups',
      },
    },
    // No RemoteEndPoint: AuthorizeRequest's AuthenticationRequest carries none.
    SessionInfo: {
      PlayState: { CanSeek: false, IsPaused: false, IsMuted: false, RepeatMode: 'RepeatNone', PlaybackOrder: 'Default' },
      AdditionalUsers: [],
      Capabilities: { PlayableMediaTypes: [], SupportedCommands: [], SupportsMediaControl: false, SupportsPersistentIdentifier: true },
      PlayableMediaTypes: [],
      Id: sessionId(request.appName, request.deviceId),
      UserId: user.id, UserName: user.name, Client: request.appName,
      LastActivityDate: when, LastPlaybackCheckIn: '0001-01-01T00:00:00.0000000Z',
      DeviceName: request.deviceName, DeviceId: request.deviceId, ApplicationVersion: request.appVersion,
      IsActive: true, SupportsMediaControl: false, SupportsRemoteControl: false,
      NowPlayingQueue: [], NowPlayingQueueFullItems: [], HasCustomDeviceName: false,
      ServerId: JELLYFIN_SERVER_ID, SupportedCommands: [],
    },
    AccessToken: token,
    ServerId: JELLYFIN_SERVER_ID,
  };
}

/** SessionManager: (appName + deviceId).GetMD5() -- MD5 of UTF-16LE, as a .NET Guid ("N", first three fields little-endian). */
function sessionId(appName: string, deviceId: string): string {
  const hash = createHash('md5').update(Buffer.from(appName + deviceId, 'utf16le')).digest();
  return [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15].map((i) => hash[i]!.toString(16).padStart(2, '0')).join('');
}

/** 100 ns ticks below the millisecond; the last digit is never 0, so DateAdded always shows 7 digits. */
function subMillisecondTicks(): number {
  return randomInt(0, 1000) * 10 + randomInt(1, 10);
}

/** JsonDateTimeConverter: millisecond 0 -> always 7 fractional digits; else System.Text.Json's round-trip form, trailing zeros trimmed. */
function jsonDate(ms: number, ticks: number): string {
  const date = new Date(ms);
  const seconds = date.toISOString().slice(0, 19);
  const fraction = String(date.getUTCMilliseconds()).padStart(3, '0') + String(ticks).padStart(4, '0');
  if (date.getUTCMilliseconds() === 0) return `${seconds}.${fraction}Z`;
  return `${seconds}.${fraction.replace(/0+$/, '')}Z`;
}

// ---- the HTTP side ----

/** AuthorizationContext.GetAuthorization: `MediaBrowser` (any case), one space, then GetParts. */
function parseAuthorization(header: string | undefined): Map<string, string> | undefined {
  if (!header) return undefined;
  const firstSpace = header.indexOf(' ');
  if (firstSpace === -1) return undefined;
  if (header.slice(0, firstSpace).toLowerCase() !== 'mediabrowser') return undefined;
  return getParts(header.slice(firstSpace + 1));
}

/** AuthorizationContext.GetParts, character for character. */
function getParts(header: string): Map<string, string> {
  const result = new Map<string, string>();
  let escaped = false;
  let start = 0;
  let key = '';
  let i: number;
  for (i = 0; i < header.length; i++) {
    const token = header[i];
    if (token === '"' || token === ',') {
      // "Applying a XOR logic to evaluate whether it is opening or closing a value"
      escaped = !escaped === (token === '"');
      if (token === ',' && !escaped) {
        if (start < i) {
          result.set(key, urlDecode(trimQuotes(header.slice(start, i))));
          key = '';
        }
        start = i + 1;
      }
    } else if (!escaped && token === '=') {
      key = header.slice(start, i).trim();
      start = i + 1;
    }
  }
  if (start < i) result.set(key, urlDecode(trimQuotes(header.slice(start, i))));
  return result;
}

function trimQuotes(value: string): string {
  return value.replace(/^"+|"+$/g, '');
}

/** System.Net.WebUtility.UrlDecode: '+' is a space, %XX a byte, bytes decoded as UTF-8; a bad escape stays as it is. */
function urlDecode(value: string): string {
  let out = '';
  const bytes: number[] = [];
  const flush = () => {
    if (bytes.length === 0) return;
    out += Buffer.from(bytes).toString('utf8');
    bytes.length = 0;
  };
  for (let pos = 0; pos < value.length; pos++) {
    let ch = value.charCodeAt(pos);
    if (ch === 0x2b) {
      ch = 0x20;
    } else if (ch === 0x25 && pos < value.length - 2) {
      const h1 = parseInt(value[pos + 1]!, 16);
      const h2 = parseInt(value[pos + 2]!, 16);
      if (!Number.isNaN(h1) && !Number.isNaN(h2)) {
        bytes.push(h1 * 16 + h2);
        pos += 2;
        continue;
      }
    }
    if ((ch & 0xff80) === 0) {
      bytes.push(ch);
    } else {
      flush();
      out += String.fromCharCode(ch);
    }
  }
  flush();
  return out;
}

/** Kestrel's header decoding: ASCII, else UTF-8; undefined (-> 400) for bytes that are not UTF-8. Node hands the bytes over as Latin-1. */
function decodeHeaders(req: IncomingMessage): Map<string, string> | undefined {
  const headers = new Map<string, string>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    let value = req.rawHeaders[i + 1]!;
    if (/[^\x00-\x7f]/.test(value)) {
      try {
        value = utf8.decode(Buffer.from(value, 'latin1'));
      } catch {
        return undefined;
      }
    }
    if (!headers.has(name)) headers.set(name, value);
  }
  return headers;
}

/** An ASP.NET Core query value: the first one whose name matches case-insensitively. */
function queryValue(url: URL, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of url.searchParams) if (key.toLowerCase() === wanted) return value;
  return undefined;
}

/** .NET Guid.TryParse (N, D, B and P forms) -> 32 lowercase hex. */
function parseGuid(value: string): string | undefined {
  const v = value.trim();
  const m = /^[0-9a-f]{32}$/i.exec(v)
    ?? /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(v.replace(/^\{(.*)\}$|^\((.*)\)$/, '$1$2'));
  return m ? m[0].replace(/-/g, '').toLowerCase() : undefined;
}

/** SystemTextJsonInputFormatter's media types. */
function isJsonMediaType(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || type === 'text/json' || /^application\/[^/\s]+\+json$/.test(type);
}

/**
 * How Jellyfin's output formatters answer an ObjectResult holding a string: its JSON formatter
 * comes first and takes application/json, application/*, * / * and no Accept at all; the string
 * formatter only wins when the client's best choice is text/plain or text/*.
 */
function prefersText(accept: string | undefined): boolean {
  const ranges = (accept ?? '').split(',').map((part, index) => {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return { type, q: q ? Number(q.slice(2)) : 1, index };
  }).filter((r) => r.type && r.q > 0).sort((a, b) => b.q - a.q || a.index - b.index);
  for (const { type } of ranges) {
    if (type === 'application/json' || type === 'application/*' || type === '*/*') return false;
    if (type === 'text/plain' || type === 'text/*') return true;
  }
  return false;
}

function stringResult(res: ServerResponse, accept: string | undefined, status: number, value: string): void {
  if (!prefersText(accept)) return json(res, status, value);
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(value);
}

/** System.Text.Json with JavaScriptEncoder.Default: everything outside printable ASCII, and " & ' + < > `, as \uXXXX. */
function stjStringify(value: unknown): string {
  return JSON.stringify(value).replace(/\\["\\/bfnrtu]|[^\x20-\x7e]|['+<>&`]/g, (m) => {
    if (m === '\\"') return '\\u0022';
    if (m.startsWith('\\')) return m;
    return `\\u${m.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(stjStringify(value));
}

/** ExceptionMiddleware's answer (Content-Type exactly "text/plain"). */
function text(res: ServerResponse, status: number, value: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain' });
  res.end(value);
}

function empty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, status === 204 ? headers : { ...headers, 'Content-Length': '0' });
  res.end();
}

function traceId(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`;
}

function problem(res: ServerResponse, status: number, title: string, type: string, errors?: Record<string, string[]>): void {
  res.writeHead(status, { 'Content-Type': 'application/problem+json; charset=utf-8' });
  res.end(stjStringify({ type, title, status, ...(errors ? { errors } : {}), traceId: traceId() }));
}

/** [ApiController]'s automatic 400 for an invalid model. */
function validationProblem(res: ServerResponse, errors: Record<string, string[]>): void {
  problem(res, 400, 'One or more validation errors occurred.', 'https://tools.ietf.org/html/rfc9110#section-15.5.1', errors);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
