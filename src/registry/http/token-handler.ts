import { RegistryError } from '../errors.js';
import type { Principal } from '../auth/policy.js';
import { principalFromSubject } from '../auth/access.js';
import { readSmallBody, sendJson, type Context } from './context.js';

/**
 * The Docker token endpoint: `GET /auth/token?service=…&scope=…` with Basic credentials (or none, for
 * anonymous access), and the OAuth2 form `POST /auth/token` (grant_type=password) docker and containerd use.
 * Each requested scope is cut down to what the principal's roles allow; asking for more is not an error.
 */
export async function tokenEndpoint(ctx: Context): Promise<void> {
  ctx.route = 'token';
  const method = ctx.req.method ?? 'GET';
  let principal: Principal;
  let scopes: string[];
  let service: string | null;
  if (method === 'GET') {
    scopes = ctx.query.getAll('scope');
    service = ctx.query.get('service');
    principal = ctx.caller.principal;
    if (ctx.caller.claims)
      throw new RegistryError('UNAUTHORIZED', 'Use Basic credentials to request a token, not a token');
  } else if (method === 'POST') {
    const form = new URLSearchParams((await readSmallBody(ctx, 64 * 1024, 'form')).toString('utf8'));
    scopes = form.getAll('scope').flatMap((s) => s.split(' '));
    service = form.get('service');
    const grant = form.get('grant_type');
    if (grant === 'password') {
      principal = await ctx.access.login(
        form.get('username') ?? '',
        form.get('password') ?? '',
        ctx.req.remoteAddress,
      );
    } else if (grant === 'refresh_token') {
      const claims = await ctx.access.tokens.verify(form.get('refresh_token') ?? '');
      if (!claims)
        throw new RegistryError('UNAUTHORIZED', 'The refresh token is invalid or expired; log in again');
      principal = principalFromSubject(claims.subject);
      // A refresh must not outlive the account: a removed user or a revoked or expired robot gets nothing.
      if (!(await ctx.access.isActive(principal))) {
        throw new RegistryError('UNAUTHORIZED', `${principal.member} is no longer active; log in again`);
      }
    } else {
      throw new RegistryError(
        'UNSUPPORTED',
        `grant_type "${grant ?? ''}" is not supported; use password or refresh_token`,
        { status: 400 },
      );
    }
  } else {
    throw new RegistryError('UNSUPPORTED', `Method ${method} is not supported on /auth/token`, {
      status: 405,
    });
  }
  if (service !== null && service !== ctx.access.tokens.service) {
    throw new RegistryError(
      'DENIED',
      `This registry issues tokens for service "${ctx.access.tokens.service}", not "${service}"`,
      { status: 400 },
    );
  }
  const access = ctx.access.grant(principal, scopes);
  const { token, expiresIn, issuedAt } = await ctx.access.tokens.issue(principal.member, access);
  sendJson(
    ctx,
    { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt },
    { headers: { 'cache-control': 'no-store' } },
  );
}
