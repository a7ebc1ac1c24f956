/**
 * One cross-field problem found in a config section, with the path the config schema reports it
 * at. Sections return these so the main schema's `superRefine` can add them without each section
 * importing the main schema.
 */
export interface ConfigIssue {
  readonly path: (string | number)[];
  readonly message: string;
}
