/** The hubbub release, announced in `hello` and `--version`. */
export const VERSION = "0.1.0";
