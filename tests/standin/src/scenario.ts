// Which behaviour this build of the stand-in has. Tests overwrite this file and commit.
export const SCENARIO: string = "normal";
