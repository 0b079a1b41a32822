/** Roles, from least to most: each includes the ones before it. */
export type Role = 'reader' | 'writer' | 'admin';

export interface UserRecord {
  readonly name: string;
  readonly passwordHash: string;
  readonly createdAt: number;
}

export interface RobotRecord {
  readonly name: string;
  /** SHA-256 of the robot's secret (the secret itself is shown once and never stored). */
  readonly secretHash: string;
  readonly description: string;
  readonly createdAt: number;
  readonly expiresAt?: number;
  readonly revokedAt?: number;
}

/** A role granted to a member on a scope: `*` (whole registry), `project/` (a prefix) or `project/repo`. */
export interface Binding {
  readonly member: string;
  readonly role: Role;
  readonly scope: string;
  readonly createdAt: number;
}

export interface RepositorySettings {
  readonly name: string;
  readonly description: string;
  readonly publicRead: boolean;
  readonly createdAt: number;
}

/** A Kubernetes cluster whose service-account tokens the registry accepts. */
export interface ClusterTrust {
  readonly name: string;
  readonly issuer: string;
  /** A static JWKS (air-gapped set-ups); without it keys come from the issuer's OIDC discovery. */
  readonly jwks?: string;
  readonly createdAt: number;
}

export interface AuditEntry {
  readonly id: number;
  readonly at: number;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** Principals, role bindings, repository settings, trusted clusters and the audit log. */
export interface AuthStore {
  countUsers(): Promise<number>;
  getUser(name: string): Promise<UserRecord | undefined>;
  putUser(user: UserRecord): Promise<void>;
  deleteUser(name: string): Promise<boolean>;
  listUsers(): Promise<UserRecord[]>;

  getRobot(name: string): Promise<RobotRecord | undefined>;
  putRobot(robot: RobotRecord): Promise<void>;
  revokeRobot(name: string, at: number): Promise<boolean>;
  listRobots(): Promise<RobotRecord[]>;

  addBinding(binding: Binding): Promise<void>;
  removeBinding(member: string, scope: string): Promise<boolean>;
  listBindings(filter?: { member?: string; scope?: string }): Promise<Binding[]>;

  getRepositorySettings(name: string): Promise<RepositorySettings | undefined>;
  putRepositorySettings(settings: RepositorySettings): Promise<void>;
  deleteRepositorySettings(name: string): Promise<boolean>;
  listRepositorySettings(): Promise<RepositorySettings[]>;

  putCluster(cluster: ClusterTrust): Promise<void>;
  getCluster(name: string): Promise<ClusterTrust | undefined>;
  listClusters(): Promise<ClusterTrust[]>;
  deleteCluster(name: string): Promise<boolean>;

  appendAudit(entry: Omit<AuditEntry, 'id'>): Promise<void>;
  listAudit(filter?: { since?: number; actor?: string; limit?: number }): Promise<AuditEntry[]>;
}
